"""Golden replay: the first 2,000 jobs of the bundled Philly sample on philly-mini at load 0.8,
under every policy. Any change to a decision shows up here. When a change is *meant* to alter
schedules, regenerate with `KRAFT_REGEN_GOLDEN=1 pytest tests/test_golden.py` and explain the
new figures in the commit message."""

import json
import os
from pathlib import Path

from kraft.sim.run import simulate
from kraft.sim.traces import load_trace
from kraft.sim.traces.canonical import Trace
from kraft.spec.load import load_fleet, load_tenants

GOLDEN = Path(__file__).parent / "golden" / "philly-mini-2000.json"
POLICIES = ["fifo", "backfill", "fairshare", "las", "srtf"]


def figures(policy: str) -> dict:
    sample = load_trace("philly-sample", None)
    trace = Trace("philly-sample-2000", sample.table.slice(0, 2000))
    r = simulate(load_fleet("philly-mini"), load_tenants("philly-mini"), trace, policy,
                 load=0.8).results
    return {"jct_s": r["overall"]["jct_s"], "queue_delay_s": r["overall"]["queue_delay_s"],
            "makespan_s": r["makespan_s"], "preemptions": r["preemptions"],
            "lost_gpu_hours": r["lost_gpu_hours"], "finished": r["jobs"]["finished"]}


def test_golden_replay():
    got = {p: figures(p) for p in POLICIES}
    if os.environ.get("KRAFT_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert got == want
    # and the replay is one where policies differ
    means = {p: got[p]["jct_s"]["mean"] for p in POLICIES}
    assert means["fifo"] > means["backfill"] > means["srtf"]
