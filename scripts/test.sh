#!/usr/bin/env bash
# The whole test suite: C units (cmocka, ctest), the Python runtime's unittest
# suite, and the integration/fault tests against real processes on loopback,
# first on the normal build, then the C units and integration tests again on
# an ASan+UBSan build. Ends with one line "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
logs=$(mktemp -d)
passed=0
failed=0
status=0

# stage NAME COMMAND...: runs one stage, counts its tests from its output.
stage() {
    local name=$1
    shift
    echo "=== $name"
    "$@" 2>&1 | tee "$logs/$name.log"
    local rc=${PIPESTATUS[0]}
    local ran fails
    if grep -q "tests passed" "$logs/$name.log"; then # ctest -V: count cmocka's own lines
        ran=$(grep -oE "\[  (PASSED|FAILED)  \] [0-9]+ test" "$logs/$name.log" | grep -oE "[0-9]+" | awk '{s += $1} END {print s + 0}')
        fails=$(grep -oE "\[  FAILED  \] [0-9]+ test" "$logs/$name.log" | grep -oE "[0-9]+" | awk '{s += $1} END {print s + 0}')
    else # unittest
        ran=$(grep -oE "^Ran [0-9]+ test" "$logs/$name.log" | tail -1 | grep -oE "[0-9]+")
        fails=$(grep -E "^FAILED \(" "$logs/$name.log" | grep -oE "(\(|, )(failures|errors|unexpected successes)=[0-9]+" | grep -oE "[0-9]+" | awk '{s += $1} END {print s + 0}')
    fi
    ran=${ran:-0}
    fails=${fails:-0}
    if [ "$rc" -ne 0 ] && [ "$fails" -eq 0 ]; then fails=1; fi
    passed=$((passed + ran - fails))
    failed=$((failed + fails))
    [ "$rc" -ne 0 ] && status=1
    echo "=== $name: exit $rc"
}

./scripts/build.sh build || exit 1
stage unit ctest --test-dir build -V
stage python $PY -m unittest discover -s tests/python -v
stage integration env PYFLEET_BUILD=build $PY -m unittest discover -s tests/integration -t . -v

# The integration path under valgrind: a leak or memory error makes a daemon
# exit 99, which the tests check. The broker links tcmalloc: valgrind takes
# over its allocator (soname synonym); libzmq frees some new[] blocks with
# free(), harmless and not ours, so mismatched frees are not reported.
stage integration-valgrind env PYFLEET_BUILD=build \
    PYFLEET_WRAP="valgrind -q --suppressions=$PWD/tests/valgrind.supp --soname-synonyms=somalloc=*tcmalloc* --show-mismatched-frees=no --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99" \
    $PY -m unittest tests.integration.test_end_to_end tests.integration.test_local_worker \
    tests.integration.test_unix_clients tests.integration.test_security tests.integration.test_mdp -v

# The benchmark harness in smoke mode (seconds): it still runs every system.
stage bench-smoke env PYFLEET_BUILD="$PWD/build" ./bench/run.sh --smoke

./scripts/build.sh build-asan -DPYFLEET_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug || exit 1
# detect_stack_use_after_return: a thread reading its starter's stack after the
# starter returned (pf_zap once did) fails here instead of now and then.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
stage unit-asan ctest --test-dir build-asan -V
stage integration-asan env PYFLEET_BUILD=build-asan $PY -m unittest discover -s tests/integration -t . -v

rm -rf "$logs"
echo "tests: $passed passed, $failed failed"
exit $status
