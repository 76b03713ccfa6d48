#!/bin/sh
# run_fault.sh: run an mpirun job that must fail, and check how.
#   run_fault.sh MAX_SECONDS EXPECT REGEX -- COMMAND...
# EXPECT is an exit status or "nonzero". Passes (exit 0) iff the job exits as expected within
# MAX_SECONDS and its combined output matches the extended regex REGEX; prints the output either way.
# A job that hangs is killed at MAX_SECONDS + 10 (and fails).
max=$1 expect=$2 regex=$3
shift 3
[ "$1" = "--" ] && shift
out=$(mktemp)
start=$(date +%s.%N)
timeout -k 5 $((max + 10)) "$@" >"$out" 2>&1
rc=$?
end=$(date +%s.%N)
cat "$out"
elapsed=$(awk "BEGIN { printf \"%.2f\", $end - $start }")
echo "run_fault: exit status $rc after $elapsed s (limit $max s, expected $expect)"
ok=0
if [ "$expect" = nonzero ]; then
  [ "$rc" -ne 0 ] || { echo "run_fault: FAIL: exit status 0"; ok=1; }
else
  [ "$rc" -eq "$expect" ] || { echo "run_fault: FAIL: exit status $rc, expected $expect"; ok=1; }
fi
awk "BEGIN { exit !($elapsed < $max) }" || { echo "run_fault: FAIL: took $elapsed s"; ok=1; }
grep -Eq -- "$regex" "$out" || { echo "run_fault: FAIL: output does not match: $regex"; ok=1; }
rm -f "$out"
[ $ok -eq 0 ] && echo "run_fault: PASS"
exit $ok
