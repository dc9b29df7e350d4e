"""Test and demo support: loopback servers, the fault proxy, workers and fixture generators.

Not part of the installed package: the tests, the demo and the benchmarks import it from a
checkout of the repository (its root on ``sys.path``).
"""
