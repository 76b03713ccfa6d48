#!/usr/bin/env bash
# run_fuzz.sh: the fuzz ctests. replay: run the target once on every file of the given directories
# (seed corpus, kept crash inputs), each in its own process, and name every input that fails.
# fuzz: copy the seed corpus into WORKDIR and fuzz it there (the source tree is never written);
# a crash leaves WORKDIR/crash-* and fails the test. Flags after -- go to libFuzzer.
# Usage: run_fuzz.sh replay|fuzz TARGET WORKDIR DIR... -- LIBFUZZER-FLAG...
set -uo pipefail
mode=$1 bin=$2 work=$3
shift 3
dirs=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do dirs+=("$1"); shift; done
[ $# -gt 0 ] && shift
flags=("$@")
rm -rf "$work"
mkdir -p "$work"
# the targets' scratch files, removed even when an input crashed the target
scratch=$(mktemp -d /dev/shm/ndl-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export NDL_FUZZ_TMPDIR=$scratch
# stack traces with file:line (the symbolizer is not on PATH on Debian)
for s in llvm-symbolizer /usr/lib/llvm-*/bin/llvm-symbolizer; do
  if command -v "$s" >/dev/null; then export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v "$s")}; break; fi
done
case $mode in
  replay)
    n=0
    failed=()
    for d in "${dirs[@]}"; do
      [ -d "$d" ] || continue
      for f in "$d"/*; do
        [ -f "$f" ] || continue
        n=$((n + 1))
        if ! "$bin" "${flags[@]}" "$f" >"$work/log" 2>&1; then
          failed+=("$f")
          echo "FAILED: $f"
          grep -v -e '^INFO:' -e '^Running:' -e '^Executed' "$work/log" | tail -n 40
        fi
      done
    done
    echo "run_fuzz: $(basename "$bin"): replayed $n inputs, ${#failed[@]} failed${failed:+: ${failed[*]}}"
    [ ${#failed[@]} -eq 0 ]
    ;;
  fuzz)
    mkdir -p "$work/corpus"
    cp "${dirs[0]}"/* "$work/corpus/"
    "$bin" "${flags[@]}" -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" >"$work/log" 2>&1
    rc=$?
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$work/log"
    if [ $rc -ne 0 ]; then
      tail -n 60 "$work/log"
      echo "run_fuzz: $(basename "$bin") failed (exit $rc); inputs: $(ls "$work" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | tr '\n' ' ')"
    fi
    exit $rc
    ;;
  *)
    echo "usage: run_fuzz.sh replay|fuzz TARGET WORKDIR DIR... -- LIBFUZZER-FLAG..." >&2
    exit 2
    ;;
esac
