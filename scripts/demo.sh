#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts a broker and a worker
# with 2 bridges on loopback, runs sample calls, prints what happened, and
# stops every process it started (by pid, also on error or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh build

BIN=build/bin
. scripts/procs.sh
ports=($(free_port 3))
EP="tcp://127.0.0.1:${PYFLEET_DEMO_PORT:-${ports[0]}}"
MGMT="tcp://127.0.0.1:${ports[1]}"
EVENTS="tcp://127.0.0.1:${ports[2]}"
LOGS=$(mktemp -d)

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "Starting pyfleet-broker on $EP and pyfleet-worker with 2 bridges (logs in $LOGS)"
$BIN/pyfleet-broker --bind "$EP" --mgmt "$MGMT" --events "$EVENTS" --unix "$LOGS/broker.sock" \
    2>"$LOGS/broker.log" &
pids+=($!)
$BIN/pyfleet-worker --broker "$EP" --service demo --bridges 2 --module examples/commands.py \
    2>"$LOGS/worker.log" &
pids+=($!)

# Wait (bounded) until both bridges sent their ready frame.
for _ in $(seq 300); do
    [ "$(grep -c -- '-> ready after' "$LOGS/worker.log" || true)" -ge 2 ] && break
    sleep 0.05
done
grep -c -- '-> ready after' "$LOGS/worker.log" | grep -q 2 || { echo "bridges did not start"; cat "$LOGS/worker.log"; exit 1; }
grep -- '-> ready after' "$LOGS/worker.log" | sed 's/^/  /'

call() { echo "\$ pyfleet call $*"; $BIN/pyfleet call --broker "$EP" "$@"; }

say "1. echo: the args come back unchanged"
call demo echo '{"text": "hello", "numbers": [1, 2.5, -3], "nested": {"ok": true}}'

say "2. a Python exception becomes a typed PYTHON_ERROR with the type and traceback"
call demo divide '{"a": 1, "b": 0}' || echo "(exit status $?)"

say "3. an unknown command is UNKNOWN_COMMAND"
call demo nope '{}' || echo "(exit status $?)"

say "4. two 'sleep 1 s' calls at once run on both bridges in parallel"
start=$(date +%s.%N)
call demo sleep '{"seconds": 1}' &
a=$!
call demo sleep '{"seconds": 1}' &
b=$!
wait $a $b
end=$(date +%s.%N)
printf 'both finished in %.2f s (sequentially it would take 2 s)\n' "$(echo "$end - $start" | awk '{print $1 - $3}')"

say "5. each bridge is its own long-lived Python process"
for i in 1 2 3 4; do call demo greet "{\"name\": \"call $i\"}"; done

say "6. sessions: a session's requests stay on the bridge that holds its state"
for i in 1 2 3; do call --session alice demo count '{}'; done
call --session bob demo count '{}'

say "7. a call past its deadline gets TIMEOUT; the bridge is replaced"
call --timeout 500 demo sleep '{"seconds": 5}' || echo "(exit status $?)"
call demo echo '{"after": "timeout"}'

# The replacement bridge of step 7 is ready once the broker counts 2 again.
for _ in $(seq 100); do
    $BIN/pyfleet status --mgmt "$MGMT" --json | grep -q '"total": *2' && break
    sleep 0.05
done

say "8. 2 000 calls one after the other, over tcp and over the broker's Unix socket (--unix)"
for endpoint in "$EP" "unix://$LOGS/broker.sock"; do
    echo "\$ pyfleet call --broker $endpoint --count 2000 demo echo '{}'"
    $BIN/pyfleet call --broker "$endpoint" --count 2000 demo echo '{}' | grep -E 'answered|latency'
done

say "9. a Majordomo (RFC 7 MDP/0.1) client in any language: here a few lines of pyzmq"
echo "\$ examples/mdp_client.py $EP demo"
/usr/bin/python3 examples/mdp_client.py "$EP" demo

say "10. status, as the broker's management endpoint sees the fleet"
for what in status workers services sessions; do
    echo "\$ pyfleet $what"
    $BIN/pyfleet $what --mgmt "$MGMT"
    echo
done

say "Worker log (lifecycle lines):"
grep -E 'bridge [0-9]+ gen' "$LOGS/worker.log" | sed 's/^/  /' | tail -12
say "Stopping broker and worker"
stop_pids
pids=()
echo "done; logs kept in $LOGS"
