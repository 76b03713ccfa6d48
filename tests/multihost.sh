#!/bin/bash
# multihost.sh: ndl-train across 3 simulated hosts: network namespaces (one per host, plus one
# holding the bridge, so the machine's own namespace is never touched) on the private subnet
# 10.213.7.0/24, mpirun in host 0 launching orted through a plm_rsh_agent that enters the host's
# namespace. Checks (1) 3 hosts == 1 process (per-step loss within 1e-5) and (2) cutting host 2's
# link mid-run ends the whole job (mpirun included) with exit 5 within --timeout + 30 s, the
# survivors naming rank 2, no process left in any namespace. Bounding mpirun needs the per-host
# setting the README gives: sysctl net.ipv4.tcp_retries2=5 (set here inside each namespace only).
#   multihost.sh NDL_TRAIN MPIRUN      (exit 0 pass, 1 fail, 77 skip: no root / no namespaces)
# NDL_MULTIHOST_TIMEOUT=S sets the cut run's --timeout (default 3); NDL_MULTIHOST_MCA adds mpirun
# options, NDL_MULTIHOST_TCP_RETRIES2 the hosts' net.ipv4.tcp_retries2 (measuring other settings).
set -u
train=$1 mpirun=$2
netns_who=multihost
. "$(dirname "$0")/netns_hosts.sh" # the simulated hosts, shared with bench/multihost_bw.sh
[ -x "$train" ] || { echo "multihost: FAIL: no ndl-train at $train"; exit 1; }
netns_setup 3 "$(mktemp -d /tmp/ndl-multihost.XXXXXX)"

# data: pseudo-random pixels (0..69, like tests/cli_util.h's noise) and labels from awk's seeded
# generator, the same files for both runs. (With full-range 0..254 noise the default Adam run on 3
# ranks drifts by 4e-3 at step 6, on one machine too: reassociation amplified by Adam near g = 0, as
# one process does when only the BLAS kernel changes; README "Distributed training".)
be32() { printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))"
  printf "\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"; }
bytes() { # count seed range: bytes 0..range-1
  LC_ALL=C awk -v n=$1 -v s=$2 -v r=$3 'BEGIN { srand(s); for (i = 0; i < n; i++) printf "%c", 1 + int(rand() * r) }' |
    tr '\001-\377' '\000-\376'
}
mkdata() { # split n seed
  { be32 2051; be32 $2; be32 28; be32 28; bytes $(($2 * 784)) $3 70; } >"$work/data/$1-images-idx3-ubyte"
  { be32 2049; be32 $2; bytes $2 $(($3 + 1)) 10; } >"$work/data/$1-labels-idx1-ubyte"
}
mkdir -p "$work/data"
mkdata train 600 11
mkdata t10k 120 21

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0
netns_mpi_opts 3
fail=0

# (1) 3 hosts == 1 process, step by step
args=(--data "$work/data" --epochs 1 --batch-size 51 --max-steps 11 --log-steps --quiet --timeout 20)
timeout -k 5 60 "$train" "${args[@]}" --log "$work/one.log" >"$work/one.out" 2>&1 || { echo "multihost: FAIL: 1-process run"; cat "$work/one.out"; fail=1; }
in_host0 timeout -k 5 60 "$mpirun" "${mpi_opts[@]}" "$train" "${args[@]}" --log "$work/three.log" >"$work/three.out" 2>&1
rc=$?
[ $rc = 0 ] || { echo "multihost: FAIL: 3-host run exited $rc"; cat "$work/three.out"; fail=1; }
cmp=$(paste -d' ' <(grep '^{"step".*"loss"' "$work/one.log") <(grep '^{"step".*"loss"' "$work/three.log") |
  sed 's/[{}"]/ /g; s/[:,]/ /g' | awk '{ n++; d = $6 - $12; if (d < 0) d = -d; if (d > m) m = d }
    END { printf "%d %.3g", n, m; exit !(n == 11 && m <= 1e-5) }')
if [ $? = 0 ]; then echo "multihost: 3 hosts == 1 process: steps, max |loss diff| = $cmp"
else echo "multihost: FAIL: 3 hosts != 1 process (steps, max |loss diff| = $cmp)"; fail=1; fi

# (2) cut host 2's link mid-run: the job ends with 5 within --timeout + 30 s
T=${NDL_MULTIHOST_TIMEOUT:-3}
in_host0 timeout -k 5 $((T + 120)) "$mpirun" "${mpi_opts[@]}" "$train" --data "$work/data" --epochs 100000 \
  --batch-size 51 --quiet --timeout $T >"$work/cut.out" 2>&1 &
job=$!
for _ in $(seq 1 100); do # wait for training to run (an epoch line), at most 20 s
  grep -q '^epoch' "$work/cut.out" 2>/dev/null && break
  sleep 0.2
done
ip -n ${P}h2 link set eth0 down
t0=$(date +%s.%N)
wait $job
rc=$?
secs=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
left() { for h in h0 h1 h2; do ip netns pids $P$h | xargs -r ps -o comm= -p | tr '\n' ' '; done; }
for _ in $(seq 1 40); do [ -z "$(left)" ] && break; sleep 0.5; done # the cut-off host's orted
left=$(left)
gone=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
echo "multihost: link cut: mpirun exited $rc after $secs s (bound: --timeout $T + 30 s);" \
  "every host empty after $gone s (left: ${left:-none})"
grep 'ndl-train' "$work/cut.out" | grep -v '^epoch'
if [ $rc != 5 ] || ! awk "BEGIN { exit !($secs < $T + 30) }"; then
  echo "multihost: FAIL: expected exit 5 within $((T + 30)) s"; tail -30 "$work/cut.out"; fail=1
fi
grep -Eq 'rank [01]: .*timed out .*(rank\(s\) 2 did not answer|waiting for rank\(s\) 2)' "$work/cut.out" ||
  { echo "multihost: FAIL: no survivor named rank 2"; fail=1; }
[ -z "$left" ] || { echo "multihost: FAIL: processes left behind: $left"; fail=1; }
[ $fail = 0 ] && echo "multihost: PASS"
exit $fail
