"""Does the live step slow down as finished jobs pile up? Recorded in
bench/results/live-step-<db>.json.

    python bench/live_step.py [--db postgresql://postgres@127.0.0.1:5432/postgres]
                              [--rounds 8] [--batch 5000]

The live ControlPlane on the philly fleet (2,816 GPUs) with the executor that runs nothing
and an injected clock: each round inserts `batch` one-GPU jobs of 60 s, steps the loop until
all have run (every start and end is a real database write: job row, event, attempt row),
and times the steps, then 20 steps with nothing to do. The figures are the mean busy step
and the median idle step of the last round against the first (the baseline): 1.0 means the
step does not grow with the finished jobs (10,000 finished before the last round).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

RESULTS = Path(__file__).parent / "results"


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch", type=int, default=2000)
    a = ap.parse_args()

    from control import drop_pg, fresh_pg  # bench/control.py: scratch databases

    from kraft.control.service import ControlPlane
    from kraft.control.store import JobRow, TenantRow, make_engine, migrate, sessions
    from kraft.exec.null import NullExecutor
    from kraft.spec.load import load_fleet
    from kraft.spec.models import JobSpec, TenantSpec

    url = fresh_pg(a.db) if a.db else f"sqlite:///{tempfile.mkdtemp()}/kraft.db"
    engine = make_engine(url)
    migrate(engine)
    Session = sessions(engine)
    with Session() as s:
        s.add(TenantRow(name="acme", spec=TenantSpec(name="acme").model_dump(mode="json")))
        s.commit()
    clock = Clock()
    plane = ControlPlane(load_fleet("philly"), engine, NullExecutor(clock), clock=clock)
    plane.recover(0.0)
    spec = JobSpec(tenant="acme", gpus=1, command=["sleep", "60"]).model_dump(mode="json")
    rounds = []
    for r in range(a.rounds):
        with Session() as s:
            s.execute(insert(JobRow.__table__), [
                dict(tenant="acme", name=f"j{r}-{k}", state="pending", spec=spec,
                     submitted_s=clock.t) for k in range(a.batch)])
            s.commit()
        steps = []
        while True:
            t0 = time.perf_counter()
            plane.step(clock.t)
            steps.append(time.perf_counter() - t0)
            if not plane.jobs:
                break
            clock.t += 30.0
        if engine.dialect.name == "postgresql":  # as autovacuum does on a running service:
            with engine.connect() as c:  # without statistics the planner scans every job
                c.exec_driver_sql("ANALYZE jobs")
                c.commit()
        idle = []  # then steps with nothing to do: what every step pays for the history
        for _ in range(20):
            clock.t += 0.05
            t0 = time.perf_counter()
            plane.step(clock.t)
            idle.append(time.perf_counter() - t0)
        rounds.append({"round": r, "finished_before": r * a.batch, "steps": len(steps),
                       "mean_step_ms": round(statistics.mean(steps) * 1e3, 2),
                       "p50_step_ms": round(statistics.median(steps) * 1e3, 2),
                       "starts_per_s": round(a.batch / sum(steps)),
                       "idle_step_ms": round(statistics.median(idle) * 1e3, 3)})
        print(f"round {r}: {r * a.batch:,} finished before, {len(steps)} steps, "
              f"mean {rounds[-1]['mean_step_ms']} ms ({rounds[-1]['starts_per_s']} starts "
              f"and ends/s), idle step {rounds[-1]['idle_step_ms']} ms", flush=True)
    ratio = rounds[-1]["mean_step_ms"] / rounds[0]["mean_step_ms"]
    idle_ratio = rounds[-1]["idle_step_ms"] / rounds[0]["idle_step_ms"]
    print(f"last round / first: busy steps {ratio:.2f}, idle steps {idle_ratio:.2f} "
          f"(1.0: the step does not grow with finished jobs)")
    out = {"db": engine.dialect.name, "fleet": "philly (2,816 GPUs)", "batch": a.batch,
           "rounds": rounds, "last_over_first": round(ratio, 3),
           "idle_last_over_first": round(idle_ratio, 3),
           "baseline": "the first round (no finished jobs)", "python": sys.version.split()[0],
           "at": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"live-step-{engine.dialect.name}.json").write_text(
        json.dumps(out, indent=2) + "\n")
    engine.dispose()
    if a.db:
        drop_pg(a.db, url)


if __name__ == "__main__":
    main()
