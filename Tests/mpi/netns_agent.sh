#!/bin/sh
# OpenMPI's launch agent for the namespace test world (Tests/mpi/netns_world.sh), in place of ssh:
# mpirun runs `netns_agent.sh HOST orted …` (--mca plm_rsh_agent). HOST is a hostfile entry (an address);
# $KDG_NETNS_MAP has one line per host, "ADDRESS NAMESPACE HOSTNAME". The daemon runs in that host's
# network namespace and, through `unshare --uts`, under the host's own name (`ip netns exec` keeps the
# machine's hostname, so every "host" would otherwise call itself the same: MPI_Get_processor_name,
# the messages that name a host).
host=$1; shift
line=$(grep "^$host " "${KDG_NETNS_MAP:?netns_agent.sh: KDG_NETNS_MAP (the host map) is not set}")
if [ -z "$line" ]; then echo "netns_agent.sh: host $host is not in $KDG_NETNS_MAP" >&2; exit 255; fi
ns=$(echo "$line" | cut -d' ' -f2); name=$(echo "$line" | cut -d' ' -f3)
# OpenMPI passes the remote command as words for a remote shell to join and parse; eval does that here.
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && eval "$1"' "$name" "$*"
