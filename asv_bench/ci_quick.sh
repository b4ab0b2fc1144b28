#!/usr/bin/env bash
# CI check of the asv benchmark suite, in the current Python environment (conv
# and asv installed, e.g. `pip install -e ".[tf,bench]"`): validate the suite,
# then run every benchmark once (--quick) without saving results (--dry-run).
# Exits non-zero if the suite does not import, if any benchmark (or any
# parameter combination of one) failed or timed out. Skipped combinations
# (NotImplementedError in setup, shown as n/a) are not failures.
#
# Why the log is parsed too: `asv run` exits 2 when a benchmark raises or times
# out, but exits 0 when a track_ benchmark returns no number (None), which asv
# still reports as "failed". Usage: asv_bench/ci_quick.sh  (from anywhere).
set -uo pipefail
cd "$(dirname "$0")"
ASV=${ASV:-asv}
log=$(mktemp "${TMPDIR:-/tmp}/asv-ci-quick.XXXXXX")
trap 'rm -f "$log"' EXIT

# Machine info is required before `asv run`; --yes takes the defaults non-interactively.
$ASV machine --yes > /dev/null || { echo "ci_quick: asv machine failed" >&2; exit 1; }

echo "ci_quick: asv check --python=same"
$ASV check --python=same || { echo "ci_quick: asv check FAILED" >&2; exit 1; }

echo "ci_quick: asv run --python=same --quick --show-stderr --dry-run"
start=$SECONDS
$ASV run --python=same --quick --show-stderr --dry-run "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "ci_quick: asv run exited $rc after $((SECONDS - start)) s"

# asv's status lines: "[ 42.00%] ··· module.Class.bench    failed" (or "3/24 failed").
failed=$(grep -E '^\[ *[0-9.]+%\] .*[[:space:]]([0-9]+/[0-9]+ )?failed[[:space:]]*$' "$log")
other=$(grep -E 'Importing benchmark suite failed|Failed to build the project|benchmark timed out|setup_cache failed' "$log")
# (asv prints '-' for '·' when stdout is not UTF-8, hence no literal dots below.)
ran=$(grep -cE '^\[ *[0-9.]+%\] [^[:space:]]+ [A-Za-z_][A-Za-z0-9_]*\.[A-Za-z0-9_.]*[[:space:]]' "$log")

status=0
if [ "$rc" -ne 0 ]; then
    echo "ci_quick: FAIL: asv run exit status $rc" >&2; status=1
fi
if [ -n "$failed" ] || [ -n "$other" ]; then
    echo "ci_quick: FAIL: failed benchmarks:" >&2
    printf '%s\n' "$failed" "$other" | sed '/^$/d; s/^/    /' >&2
    status=1
fi
if [ "$ran" -eq 0 ]; then
    echo "ci_quick: FAIL: no benchmark ran" >&2; status=1
fi
[ "$status" -eq 0 ] && echo "ci_quick: OK ($ran benchmarks, none failed)"
exit "$status"
