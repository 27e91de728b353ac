# Sourced by scripts/demo.sh and bench/profile.sh: free ports, and the
# processes they start, stopped by pid on exit (TERM, then KILL after 5 s).
# free_port [COUNT]: COUNT distinct free ports, one per line.
free_port() { /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/free_port.py" "$@"; }

pids=()
stop_pids() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap stop_pids EXIT
