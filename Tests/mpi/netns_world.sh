# A multi-host test world on one Linux machine, sourced by Tests/mpi/multihost.sh (needs root and iproute2):
#   world_up N     N network namespaces ("hosts" kdg-h0 … kdg-h(N-1)), each with one veth link `kdg0` at
#                  10.213.0.(i+1)/24, all joined by a bridge in the machine's namespace; writes the host map
#                  $world_map for Tests/mpi/netns_agent.sh and the hostfiles $world_dir/hosts1 … hostsN
#                  (the first k hosts, slots=1 each).
#   on I CMD…      runs CMD in host I's namespace under its host name (mpirun on host 0 is the launch node).
#   hostfile_run K N ARGS…  launch/hostfile.sh over the first K hosts, N ranks, from host 0, with the launch
#                  agent (no ssh), MPI over TCP only (--mca btl tcp,self: every byte crosses a veth) on
#                  the hosts' link (IFACE=kdg0), ranks unbound (the "hosts" share this machine's cores);
#                  WORLD_MPIRUN_ARGS adds mpirun flags, WORLD_KDGRAPH replaces the binary (e.g. a wrapper).
#   reachable I J  waits (up to 10 s) until host I reaches host J over TCP; fails after that.
#   shape I RATE   a tbf qdisc of RATE (e.g. 1gbit) on both ends of host I's link: what it sends and receives;
#   unshape I, link_down I, link_up I.
#   world_down     removes every namespace, link and qdisc made (called from the EXIT/INT/TERM trap).
# Names carry this shell's pid ($$), so concurrent runs do not collide and leftovers are attributable.
world_tag="kdg$$"
world_hosts=0
world_addr() { echo "10.213.0.$(( $1 + 1 ))"; }
world_ns() { echo "${world_tag}-h$1"; }
world_veth() { echo "${world_tag}v$1"; }     # the machine-side end of host I's link (≤ 15 characters)

# Prints why this machine cannot host the world (and returns 1), or nothing.
world_unavailable() {
  [ "$(id -u)" = 0 ] || { echo "not root (network namespaces need CAP_NET_ADMIN)"; return 1; }
  local t
  for t in ip unshare mpirun orted; do command -v "$t" >/dev/null || { echo "no '$t' command"; return 1; }; done
  if ! ip netns add "${world_tag}-probe" 2>/dev/null; then echo "ip netns add failed"; return 1; fi
  ip netns del "${world_tag}-probe"
  if ! unshare --uts true 2>/dev/null; then echo "unshare --uts failed"; return 1; fi
}

world_up() {
  local n=$1 i ns
  world_dir=$(mktemp -d)
  world_map="$world_dir/hosts.map"
  : >"$world_map"
  ip link add "${world_tag}br" type bridge || return 1
  ip link set "${world_tag}br" up || return 1
  for ((i = 0; i < n; i++)); do
    ns=$(world_ns $i)
    ip netns add "$ns" || return 1
    world_hosts=$((i + 1))
    ip link add "$(world_veth $i)" type veth peer name kdg0 netns "$ns" || return 1
    ip link set "$(world_veth $i)" master "${world_tag}br" up || return 1
    ip -n "$ns" addr add "$(world_addr $i)/24" dev kdg0 || return 1
    ip -n "$ns" link set kdg0 up || return 1
    ip -n "$ns" link set lo up || return 1
    echo "$(world_addr $i) $ns kdg-h$i" >>"$world_map"
    { [ $i = 0 ] || cat "$world_dir/hosts$i"; echo "$(world_addr $i) slots=1"; } >"$world_dir/hosts$((i + 1))"
  done
}

world_down() {
  local i ns p
  for ((i = 0; i < world_hosts; i++)); do
    ns=$(world_ns $i)
    # Daemons or ranks a failed run left behind (a host cut off from mpirun) die with their namespace's link.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip link del "$(world_veth $i)" 2>/dev/null    # deletes both ends and their qdiscs
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "${world_tag}br" 2>/dev/null
  [ -n "${world_dir:-}" ] && rm -rf "$world_dir"
  world_hosts=0
}

# Lists what of this world is still on the machine (empty: nothing left).
world_leftovers() {
  { ip netns list; ip -o link; } 2>/dev/null | grep -o "${world_tag}[A-Za-z0-9-]*" | sort -u | tr '\n' ' '
}

on() {
  local i=$1; shift
  ip netns exec "$(world_ns "$i")" unshare --uts sh -c 'hostname "$0" && exec "$@"' "kdg-h$i" "$@"
}

hostfile_run() {
  local k=$1 n=$2; shift 2
  on 0 env KDG_NETNS_MAP="$world_map" IFACE=kdg0 KDGRAPH="${WORLD_KDGRAPH:-$PWD/.build/release/kdgraph}" \
    MPIRUN_ARGS="--mca plm_rsh_agent $PWD/Tests/mpi/netns_agent.sh --mca plm_rsh_no_tree_spawn 1 \
--mca btl tcp,self --bind-to none ${WORLD_MPIRUN_ARGS:-}" \
    timeout "${WORLD_TIMEOUT:-300}" bash launch/hostfile.sh "$world_dir/hosts$k" "$n" "$@"
}

# Bytes host I's link has carried (both directions), read on the machine's side.
link_bytes() {
  local s=/sys/class/net/$(world_veth "$1")/statistics
  echo $(( $(cat "$s/rx_bytes") + $(cat "$s/tx_bytes") ))
}

# Token-bucket shaping of host I's link in both directions: the machine-side end's egress is what host I
# receives, the namespace end's egress what it sends. burst: 1 ms at the rate (at least 32 KiB).
shape() {
  local i=$1 rate=$2 bits burst
  bits=$(echo "$rate" | sed 's/gbit$/000000000/; s/mbit$/000000/; s/kbit$/000/')
  burst=$(( bits / 8 / 1000 )); [ "$burst" -ge 32768 ] || burst=32768
  tc qdisc replace dev "$(world_veth "$i")" root tbf rate "$rate" burst "$burst" latency 50ms &&
    ip netns exec "$(world_ns "$i")" tc qdisc replace dev kdg0 root tbf rate "$rate" burst "$burst" latency 50ms
}
unshape() {
  tc qdisc del dev "$(world_veth "$1")" root 2>/dev/null
  ip netns exec "$(world_ns "$1")" tc qdisc del dev kdg0 root 2>/dev/null
  true
}
link_down() { ip link set "$(world_veth "$1")" down; }
reachable() {
  # A refused connection to a closed port proves the path both ways (SYN there, RST back); a timeout does not.
  on "$1" python3 - "$(world_addr "$2")" <<'EOF'
import socket, sys, time
for _ in range(10):
    try:
        socket.create_connection((sys.argv[1], 9), timeout=1).close(); sys.exit(0)
    except ConnectionRefusedError:
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(1)
EOF
}
link_up() { ip link set "$(world_veth "$1")" up; }
