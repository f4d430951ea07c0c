#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests/test_launchers.cpp: munged, slurmctld and
# slurmd, each with its files (socket, key copy, state, logs) in DIR and its ports from PORT.
#
#   tests/slurm_cluster.sh start DIR PORT   prints nothing; then SLURM_CONF=DIR/slurm.conf srun ...
#   tests/slurm_cluster.sh stop DIR
#
# Needs root, Debian's slurm-wlm and munge, and /etc/munge/munge.key. Exits 3 with one line where
# they are missing or the daemons do not come up (the test then skips).
set -uo pipefail
what="${1:-}" dir="${2:-}" port="${3:-26817}"
[ -n "$dir" ] || { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }

# Stops the daemons and waits (up to 10 s) until they are gone.
stop() {
  local pids=()
  for d in slurmd slurmctld munged; do
    [ -f "$dir/$d.pid" ] && pids+=("$(cat "$dir/$d.pid")")
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.2
  done
  kill -9 "${pids[@]}" 2>/dev/null
  return 0
}

if [ "$what" = stop ]; then stop; exit 0; fi

missing() { echo "slurm_cluster: $1" >&2; exit 3; }
[ "$(id -u)" -eq 0 ] || missing "needs root"
for tool in munged slurmctld slurmd srun sinfo; do
  command -v "$tool" >/dev/null 2>&1 || missing "$tool is not installed (Debian: slurm-wlm, munge)"
done
[ -r /etc/munge/munge.key ] || missing "no /etc/munge/munge.key"

mkdir -p "$dir/state" "$dir/spool" || exit 3
install -m 600 /etc/munge/munge.key "$dir/munge.key"
host="$(hostname)"
cat > "$dir/slurm.conf" <<EOF
ClusterName=dracarys-test
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

munged -f --socket="$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" || { stop; missing "munged did not start"; }
slurmctld -f "$dir/slurm.conf" || { stop; missing "slurmctld did not start (see $dir/slurmctld.log)"; }
slurmd -f "$dir/slurm.conf" || { stop; missing "slurmd did not start (see $dir/slurmd.log)"; }
for _ in $(seq 100); do
  if SLURM_CONF="$dir/slurm.conf" sinfo -h -o %t 2>/dev/null | grep -q idle; then exit 0; fi
  sleep 0.2
done
stop
missing "the node did not become idle within 20 s (see $dir/slurmctld.log)"
