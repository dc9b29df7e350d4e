"""Helpers that run real servers on loopback, for the test suite, the demo and benchmarks."""
