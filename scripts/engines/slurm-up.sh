#!/usr/bin/env bash
# Start a two-node Slurm cluster on this machine, with logical GPUs, for Kraft's engine tests.
#   scripts/engines/slurm-up.sh STATE_DIR      (then: export SLURM_CONF=STATE_DIR/slurm.conf)
# Nothing outside STATE_DIR is written: munged, slurmctld and two slurmd (node1, node2, 4 GPUs
# each) keep their config, sockets, spools, logs and PIDs there. Stop with slurm-down.sh.
# Fake GPUs: Slurm 22.05 wants device files for gres; character devices made with mknod (the
# same major/minor as /dev/null) work where plain files do not (../shared/ENGINES.md).
set -euo pipefail
state=$(mkdir -p "$1" && cd "$1" && pwd)
host=$(hostname -s)
user=$(id -un)
mkdir -p "$state"/{munge,munge-key,ctld,dev,log}
# Jobs run as their tenants' accounts: they must pass through to their batch scripts in the
# nodes' spool folders, as through /var/spool/slurmd on a real node (a mktemp folder is 0700).
chmod 0755 "$state"
# munge's socket where every account reaches it (a job's srun, run as its tenant, signs its
# requests), as /run/munge on a real node; its key in a folder of its own, closed
chmod 0755 "$state/munge"
chmod 0700 "$state/munge-key"
for n in 1 2; do
  mkdir -p "$state/node$n"
  chmod 0755 "$state/node$n"
  for g in 0 1 2 3; do [ -e "$state/dev/node${n}gpu$g" ] || mknod "$state/dev/node${n}gpu$g" c 1 3; done
done

# munge: its own key, socket and pid file
if [ ! -s "$state/munge-key/munge.key" ]; then
  dd if=/dev/urandom of="$state/munge-key/munge.key" bs=1024 count=1 status=none
  chmod 400 "$state/munge-key/munge.key"
fi
munged --force --key-file="$state/munge-key/munge.key" --socket="$state/munge/munge.sock" \
  --pid-file="$state/munge/munged.pid" --log-file="$state/log/munged.log" \
  --seed-file="$state/munge-key/munge.seed"

cat > "$state/slurm.conf" <<CONF
ClusterName=kraft
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.sock
CredType=cred/munge
SlurmctldPort=6917
SlurmctldPidFile=$state/ctld/slurmctld.pid
SlurmctldLogFile=$state/log/slurmctld.log
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/%n
SlurmdPidFile=$state/%n/slurmd.pid
SlurmdLogFile=$state/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
# fake nodes: trust the CPU counts written here over what this small machine has
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
# a heterogeneous job (a Kraft gang) is started by the backfill scheduler: every second
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=300
NodeName=node1 NodeAddr=127.0.0.1 Port=6918 CPUs=8 Gres=gpu:4 State=UNKNOWN
NodeName=node2 NodeAddr=127.0.0.1 Port=6919 CPUs=8 Gres=gpu:4 State=UNKNOWN
PartitionName=kraft Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
{
  echo "AutoDetect=off"
  for n in 1 2; do for g in 0 1 2 3; do
    echo "NodeName=node$n Name=gpu File=$state/dev/node${n}gpu$g"
  done; done
} > "$state/gres.conf"

export SLURM_CONF="$state/slurm.conf"
slurmctld -i
for n in 1 2; do slurmd -N "node$n"; done
for _ in $(seq 60); do
  idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -c -E 'idle|mix|alloc' || true)
  [ "$idle" -ge 2 ] && break
  sleep 0.5
done
sinfo -N -o '%N %t %G'
