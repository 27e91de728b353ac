#!/usr/bin/env bash
# Builds pyfleet into build/ (or $1), installing missing Debian packages first.
# Extra arguments go to cmake's configure step (e.g. -DPYFLEET_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
./scripts/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
