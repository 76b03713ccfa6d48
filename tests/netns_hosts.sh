#!/bin/bash
# netns_hosts.sh: simulated hosts for mpirun, sourced by tests/multihost.sh and bench/multihost_bw.sh:
# one network namespace per host plus one holding the bridge (so the machine's own namespace is
# never touched) on the private subnet 10.213.7.0/24 (host i is 10.213.7.(i+1)), and a
# plm_rsh_agent that runs orted inside a host's namespace with its own TMPDIR. Needs root and iproute2.
#   netns_setup N WORK     hosts 0..N-1 (removed again on exit); on failure: "$netns_who: SKIP" + exit 77
#   netns_mpi_opts N       the array mpi_opts: mpirun options for one rank on each of hosts 0..N-1 over TCP
#   in_host0 CMD...        CMD in host 0's namespace (where mpirun runs)
# Sets P (the namespace prefix, ndlmh<pid>) and netns_n. The hosts use net.ipv4.tcp_retries2 =
# ${NDL_MULTIHOST_TCP_RETRIES2:-5} (a dead peer fails a connection in ~13 s instead of ~15 minutes).
netns_who=${netns_who:-netns}
skip() { echo "$netns_who: SKIP: $*"; exit 77; }

netns_cleanup() {
  local h pids
  for h in $(seq 0 $((netns_n - 1)) | sed 's/^/h/') sw; do
    pids=$(ip netns pids $P$h 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  done
  for h in $(seq 0 $((netns_n - 1)) | sed 's/^/h/') sw; do ip netns del $P$h 2>/dev/null; done
  rm -rf "$work"
}

netns_setup() {
  netns_n=$1 work=$2 P=ndlmh$$
  [ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
  command -v ip >/dev/null || skip "ip (iproute2) not installed"
  trap netns_cleanup EXIT
  trap 'exit 1' INT TERM
  # namespaces of an earlier run that was killed (SIGKILL skips the trap)
  local ns old h i pids
  for ns in $(ip netns list 2>/dev/null | grep -o '^ndlmh[0-9]*sw'); do
    old=${ns#ndlmh}
    old=${old%sw}
    kill -0 "$old" 2>/dev/null && continue
    for h in $(ip netns list | grep -o "^ndlmh${old}h[0-9]*" | sed "s/^ndlmh$old//") sw; do
      pids=$(ip netns pids ndlmh$old$h 2>/dev/null)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null
      ip netns del ndlmh$old$h 2>/dev/null
    done
  done
  ip netns add ${P}sw 2>/dev/null || skip "cannot create a network namespace (ip netns add failed)"
  net() { "$@" 2>"$work/ip.err" || skip "cannot set up the simulated network: $* ($(head -c 200 "$work/ip.err"))"; }
  net ip -n ${P}sw link add br0 type bridge
  net ip -n ${P}sw link set br0 up
  for i in $(seq 0 $((netns_n - 1))); do
    net ip netns add ${P}h$i
    net ip -n ${P}sw link add v$i type veth peer name eth0 netns ${P}h$i
    net ip -n ${P}sw link set v$i master br0 up
    net ip -n ${P}h$i addr add 10.213.7.$((i + 1))/24 dev eth0
    net ip -n ${P}h$i link set eth0 up
    net ip -n ${P}h$i link set lo up
    net ip netns exec ${P}h$i sysctl -q -w net.ipv4.tcp_retries2=${NDL_MULTIHOST_TCP_RETRIES2:-5}
    mkdir -p "$work/tmp$i"
  done
  # plm_rsh_agent: "agent HOST COMMAND..." runs COMMAND in HOST's namespace, with its own TMPDIR
  # (every namespace has the same hostname, so Open MPI's session directories would collide).
  cat >"$work/agent" <<AGENT
#!/bin/sh
host=\$1
shift
i=\${host##*.}
i=\$((i - 1))
exec ip netns exec ${P}h\$i env TMPDIR=$work/tmp\$i sh -c "\$*"
AGENT
  chmod +x "$work/agent"
}

netns_mpi_opts() {
  local hosts i
  hosts=$(for i in $(seq 1 "$1"); do printf "10.213.7.%d:1," "$i"; done)
  mpi_opts=(--oversubscribe --host "${hosts%,}" -np "$1"
    --mca plm_rsh_agent "$work/agent" --mca btl tcp,self
    --mca btl_tcp_if_include 10.213.7.0/24 --mca oob_tcp_if_include 10.213.7.0/24 ${NDL_MULTIHOST_MCA:-})
}

in_host0() { ip netns exec ${P}h0 env TMPDIR="$work/tmp0" "$@"; }
