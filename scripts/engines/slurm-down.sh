#!/usr/bin/env bash
# Stop what slurm-up.sh STATE_DIR started, by the PIDs it recorded.
state=${1:?usage: slurm-down.sh STATE_DIR}
for f in "$state"/node*/slurmd.pid "$state/ctld/slurmctld.pid" "$state/munge/munged.pid"; do
  [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
