#!/usr/bin/env bash
# The benchmark harness, one command: ./bench/run.sh [--smoke] [--rounds N] [--systems a,b,...]
#
# Installs what it needs from Debian (apt-get, only what is missing), builds
# pyfleet (./scripts/build.sh) and the bench's C drivers, then runs
# bench/bench.py, which starts every system on 127.0.0.1 (free ports), runs
# the workloads interleaved over the rounds, stops what it started by pid,
# prints a table and writes bench/results/bench-*.json (git-ignored).
# PYFLEET_BUILD=DIR: measure that build directory instead of building ./build.
# --smoke: tiny counts, one round, well under a minute; exits non-zero if
# any system fails (for CI). Without it: 3 rounds, about 10-15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gearman-job-server redis-server python3-celery python3-redis python3-msgpack valgrind procps)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "bench: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PYFLEET_BUILD=DIR measures an existing build (e.g. a snapshot of a commit)
# instead of building ./build from the working tree.
if [ -z "${PYFLEET_BUILD:-}" ]; then
    ./scripts/build.sh build >/dev/null
    export PYFLEET_BUILD=$PWD/build
fi

# The bench's own C drivers: the pipe floor and the sessions load generator.
mkdir -p bench/results/.bin
CFLAGS="-std=c11 -O2 -g -Wall -Wextra -Werror"
cc $CFLAGS -pthread bench/floor/floor.c $(pkg-config --cflags --libs msgpack) -o bench/results/.bin/floor
if [ -f bench/floor/sessions.c ]; then
    cc $CFLAGS -Iclient -Icommon bench/floor/sessions.c "$PYFLEET_BUILD/lib/libpyfleet.a" "$PYFLEET_BUILD/lib/libpfcore.a" \
        $(pkg-config --cflags --libs libczmq libzmq msgpack jansson) -o bench/results/.bin/sessions
fi

# ZeroMQ's own round trip between two processes: the latency floor of any
# hop over ZeroMQ (bench.py runs it each round).
cc -std=gnu11 -O2 -g -Wall -Wextra -Werror bench/floor/zmq_rtt.c \
    $(pkg-config --cflags --libs libczmq libzmq) -o bench/results/.bin/zmq_rtt

# The codec micro-benchmark (old zmsg path vs pf_msg_send/pf_msg_recv);
# built here so it keeps compiling, run by hand: bench/results/.bin/codec [round_trips]
cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -Icommon bench/codec/codec.c common/pf_proto.c \
    common/pf_error.c $(pkg-config --cflags --libs libczmq libzmq) -o bench/results/.bin/codec

# bench.py stops everything it started; this trap covers it being killed.
/usr/bin/python3 bench/bench.py "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' INT TERM
set +e
wait $pid
rc=$?
trap - INT TERM
exit $rc
