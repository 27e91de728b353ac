#!/usr/bin/env bash
# Profiles the pyfleet hot path: a broker + an agent with 2 bridges on
# 127.0.0.1, the throughput load (`pyfleet call`, 100-byte echo, 64 in
# flight) under a system-wide `perf record -e cpu-clock -g` (software clock:
# hardware counters are not available in this VM), then prints where the
# time goes by process/thread, by user vs kernel, and the top symbols of the
# broker, the agent and the client. Usage: ./bench/profile.sh [COUNT] [tcp|ipc|local|unix]
# (local: the agent runs in the broker's process, --local-worker; clients on
# tcp; unix: the same, clients on the broker's Unix stream socket, --unix). PYFLEET_BUILD=DIR profiles that build instead of ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50000}
transport=${2:-tcp}
out=bench/results/profile-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
. scripts/procs.sh
BIN=${PYFLEET_BUILD:-build}/bin
if [ "$transport" = ipc ]; then
    EP="ipc://$PWD/$out/broker.sock"
else
    EP="tcp://127.0.0.1:$(free_port)"
fi
if [ "$transport" = local ] || [ "$transport" = unix ]; then
    printf 'worker\n    service = bench\n    bridges = 2\n    module = bench/commands.py\n' >"$out/local.zpl"
    unix=()
    [ "$transport" = unix ] && unix=(--unix "$PWD/$out/broker.stream")
    $BIN/pyfleet-broker --bind "$EP" --queue-max 200000 "${unix[@]}" --local-worker "$out/local.zpl" 2>"$out/worker.log" &
    pids+=($!)
    [ "$transport" = unix ] && EP="unix://$PWD/$out/broker.stream"
else
    $BIN/pyfleet-broker --bind "$EP" --queue-max 200000 2>"$out/broker.log" &
    pids+=($!)
    $BIN/pyfleet-worker --broker "$EP" --service bench --bridges 2 --module bench/commands.py 2>"$out/worker.log" &
    pids+=($!)
fi
for _ in $(seq 600); do
    [ "$(grep -c -- '-> ready' "$out/worker.log" || true)" -ge 2 ] && break
    sleep 0.05
done
$BIN/pyfleet call --broker "$EP" --timeout 5000 bench ping '{}' >/dev/null
args=$(/usr/bin/python3 -c 'import json; print(json.dumps({"d": "x" * 100}))')
perf record -q -a -g -e cpu-clock -F 2000 -o "$out/perf.data" -- \
    $BIN/pyfleet call --broker "$EP" --timeout 120000 --count "$count" --concurrency 64 --json bench echo "$args" \
    >"$out/call.json" 2>"$out/perf.log"
cat "$out/call.json"
{
    echo "== samples by process and thread (comm)"
    perf report -i "$out/perf.data" --stdio --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9]' | head -20
    echo "== user vs kernel by comm"
    perf report -i "$out/perf.data" --stdio --no-children --sort comm,dso 2>/dev/null | grep -E '^ +[0-9]' | head -30
    for c in pyfleet-broker local-worker pyfleet-worker pyfleet ZMQbg/IO/0; do
        echo "== top symbols: $c"
        perf report -i "$out/perf.data" --stdio --no-children --comm "$c" --sort sym 2>/dev/null | grep -E '^ +[0-9]' | head -25
    done
} | tee "$out/report.txt"
echo "profile: $out (perf.data, report.txt)"
