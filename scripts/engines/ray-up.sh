#!/usr/bin/env bash
# Start a two-node Ray cluster on this machine (4 logical GPUs per node) for Kraft's tests.
#   scripts/engines/ray-up.sh STATE_DIR [PYTHON_BIN_DIR]
# The head listens on 6380 (Redis often holds Ray's default 6379) with its dashboard, and the
# Jobs API, on 127.0.0.1:8265. Each node carries a custom resource named after it (node1,
# node2) so that Kraft can pin a gang's bundles to the nodes it chose. PIDs go to STATE_DIR;
# stop with ray-down.sh. Job entrypoints inherit the head's PATH: put the venv first.
set -euo pipefail
state=$(mkdir -p "$1" && cd "$1" && pwd)
bin=${2:-$(dirname "$(command -v python3)")}
export PATH="$bin:$PATH" RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
addr=$(hostname -I | awk '{print $1}')
ray start --head --block --port=6380 --num-cpus=2 --num-gpus=4 --resources='{"node1": 100}' \
  --dashboard-host=127.0.0.1 --dashboard-port=8265 --temp-dir="$state/tmp" \
  > "$state/head.log" 2>&1 &
echo $! > "$state/head.pid"
for _ in $(seq 60); do
  python3 - <<PY 2>/dev/null && break
import urllib.request; urllib.request.urlopen("http://127.0.0.1:8265/api/version", timeout=1)
PY
  sleep 1
done
ray start --block --address="$addr:6380" --num-cpus=2 --num-gpus=4 --resources='{"node2": 100}' \
  > "$state/worker.log" 2>&1 &
echo $! > "$state/worker.pid"
for _ in $(seq 60); do
  n=$(ray status --address="$addr:6380" 2>/dev/null | grep -c "node_" || true)
  [ "$n" -ge 2 ] && break
  sleep 1
done
ray status --address="$addr:6380" | sed -n '1,12p'
