#!/usr/bin/env bash
# Miri on the core's unit tests and property tests (few cases: miri is slow).
#
# Miri interprets on one host thread per test binary, so the binaries run as
# separate `cargo miri test` invocations, MIRI_JOBS (default: the number of
# CPUs) at a time, all under one MIRI_TIMEOUT (default 1500 s: a guard against a hang; a run takes 8-10 min alone, longer on a shared machine).
# tests/loom.rs is skipped: without `--cfg tollgate_loom` it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ci/miri.sh: cargo +nightly miri test -p tollgate-core"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
rustup +nightly component add miri rust-src
export CARGO_TARGET_DIR=target/miri
export PROPTEST_CASES="${PROPTEST_CASES:-4}"
# Proptest's failure persistence reads the working directory and regression
# files, which miri's isolation refuses (`getcwd`): switch it off (the normal
# test run replays the committed regressions). Miri then needs no isolation
# escape except forwarding these two variables.
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-env-forward=PROPTEST_CASES -Zmiri-env-forward=PROPTEST_DISABLE_FAILURE_PERSISTENCE}"
cargo +nightly miri setup
# Build every test binary once; the runs below then only interpret.
cargo +nightly miri test -p tollgate-core --lib --tests --no-run

# One job per test binary, biggest test file first, the unit tests last.
jobs=()
while read -r _ f; do
    name="$(basename "$f" .rs)"
    [[ "$name" == loom* ]] && continue
    jobs+=("--test=$name")
done < <(wc -c core/tests/*.rs | grep -v ' total$' | sort -rn)
jobs+=("--lib")
echo "-- ${#jobs[@]} test binaries, ${MIRI_JOBS:-$(nproc)} at a time, PROPTEST_CASES=$PROPTEST_CASES"

logs="$CARGO_TARGET_DIR/ci-logs"
rm -rf "$logs"
mkdir -p "$logs"
export logs
run_one() {
    local job="$1" log="$logs/${1#--}.log" start=$SECONDS rc=0
    cargo +nightly miri test -p tollgate-core "$job" >"$log" 2>&1 || rc=$?
    # One job's report at a time, never interleaved.
    {
        flock 9
        if [[ $rc -eq 0 ]]; then
            echo "-- $job: ok in $((SECONDS - start)) s ($(grep -h '^test result' "$log" | tr '\n' ' '))"
        else
            echo "-- $job: FAILED (exit $rc) after $((SECONDS - start)) s:"
            cat "$log"
        fi
    } 9>"$logs/.lock"
    return "$rc"
}
export -f run_one
if ! printf '%s\n' "${jobs[@]}" |
    timeout "${MIRI_TIMEOUT:-1500}" xargs -P "${MIRI_JOBS:-$(nproc)}" -I{} bash -c 'run_one "$@"' _ {}; then
    echo "ci/miri.sh: failed or timed out after ${MIRI_TIMEOUT:-1500} s (logs in $logs)" >&2
    exit 1
fi
