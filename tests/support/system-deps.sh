#!/usr/bin/env bash
# System libraries the test suite needs beyond PyPI: libfuse 3 (loaded by mfusepy
# through ctypes) for the FUSE filesystem whose locks do not work
# (tests/support/nolockfs.py). Installed with apt-get when running as root on
# Debian/Ubuntu; elsewhere the lock-probe tests say what is missing.
set -u
if ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3'; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends libfuse3-3 >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends libfuse3-3 >/dev/null 2>&1; } \
        || echo "note: could not install libfuse3-3; the FUSE lock tests will fail" >&2
else
    echo "note: libfuse3 is missing (Debian: apt-get install libfuse3-3); the FUSE lock tests need it" >&2
fi
exit 0
