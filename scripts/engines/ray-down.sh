#!/usr/bin/env bash
# Stop what ray-up.sh STATE_DIR started, by the PIDs it recorded (`--block` makes each
# `ray start` own its node's processes, so one kill stops a node).
state=${1:?usage: ray-down.sh STATE_DIR}
for f in "$state/worker.pid" "$state/head.pid"; do
  [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
for f in "$state/worker.pid" "$state/head.pid"; do
  for _ in $(seq 30); do [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.5; done
done
