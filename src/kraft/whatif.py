"""What-if sweeps: fleets x policies x traces x parameters, run in parallel, resumable.

    name: lab-doubles
    fleets: [philly-mini]
    traces: [philly-sample]
    policies: [fifo, backfill]
    load: 0.8
    parameters:                  # each a list; the sweep takes every combination
      gpus_added: [0, 64]        # GPUs added to the first site, as nodes like its first ones
      reservation_scale: [1, 2]  # every reserved tenant's reservation times this
      power_budget_scale: [1]    # every site's IT power budget times this
      failure_rate: [0]          # hardware failures per GPU-hour (0: none; see failures.md)
      flexible_max_gpus: [0]     # jobs this small may start up to flex_window_h later ...
      flex_window_h: [24]        # ... when the run shifts them (shift: carbon | price)

`load` compresses arrivals to that offered load on each fleet *as specified*, so a scenario
with GPUs added sees the same arrivals. Each scenario's results go to OUT/<id>/
(results.json, jobs.parquet), written only when it is complete (write, then rename), so a
sweep stopped midway and started again skips the scenarios already there. Workers compute;
the driver writes -- so the same code runs on a local process pool or, with `--ray ADDRESS`,
on a Ray cluster.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import Field, model_validator

from kraft.spec.models import _Strict

PARAMS = ("gpus_added", "reservation_scale", "power_budget_scale", "failure_rate",
          "flexible_max_gpus", "flex_window_h")


class ParametersSpec(_Strict):
    gpus_added: list[int] = Field([0], min_length=1)
    reservation_scale: list[float] = Field([1.0], min_length=1)
    power_budget_scale: list[float] = Field([1.0], min_length=1)
    failure_rate: list[float] = Field([0.0], min_length=1)
    flexible_max_gpus: list[int] = Field([0], min_length=1)
    flex_window_h: list[float] = Field([24.0], min_length=1)

    @model_validator(mode="after")
    def _ranges(self) -> ParametersSpec:
        for name in PARAMS:
            if any(v < 0 for v in getattr(self, name)):
                raise ValueError(f"{name}: values must be >= 0")
        if any(v <= 0 for v in self.power_budget_scale + self.reservation_scale):
            raise ValueError("power_budget_scale and reservation_scale must be > 0")
        return self


class SweepSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    fleets: list[str] = Field(min_length=1)
    traces: list[str] = Field(min_length=1)
    policies: list[str] = Field(min_length=1)
    tenants: str | None = Field(None, description="tenants YAML (default: each fleet's)")
    load: float | None = Field(None, gt=0)
    seed: int = 0
    energy: bool = Field(True, description="keep the energy books")
    shift: str | None = Field(None, pattern="^(carbon|price)$")
    parameters: ParametersSpec = Field(default_factory=ParametersSpec)

    def scenarios(self) -> list[dict]:
        grid = [getattr(self.parameters, p) for p in PARAMS]
        out = []
        for fleet, trace, policy, *values in itertools.product(
                self.fleets, self.traces, self.policies, *grid):
            params = dict(zip(PARAMS, values))
            sid = "_".join([_slug(fleet), _slug(trace), _safe(policy)] +
                           [f"{k}={v:g}" for k, v in params.items()])
            out.append({"id": sid, "fleet": fleet, "trace": trace, "policy": policy,
                        "params": params})
        return out


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-.=" else "-" for c in text)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in Path(text).stem)


def apply_parameters(fleet, tenants, params: dict):
    """The fleet and tenants of one scenario."""
    from kraft.spec.models import FleetSpec, TenantsSpec

    f = fleet.model_dump(mode="json", by_alias=True)
    if params["gpus_added"]:
        site = f["sites"][0]
        group = site["pods"][0]["nodes"][0]
        nodes = math.ceil(params["gpus_added"] / group["gpus"])
        site["pods"].append({"name": "added", "count": 1, "nodes": [
            {"count": nodes, "gpus": group["gpus"], "model": group["model"]}]})
        site["executor"]["nodes"] = []
    for site in f["sites"]:
        site["it_power_budget_mw"] *= params["power_budget_scale"]
    t = tenants.model_dump(mode="json")
    for spec in t["tenants"]:
        if spec["reserved_gpus"]:
            spec["reserved_gpus"] = round(spec["reserved_gpus"] * params["reservation_scale"])
            if spec.get("quota_gpus") is not None:
                spec["quota_gpus"] = max(spec["quota_gpus"], spec["reserved_gpus"])
    return FleetSpec.model_validate(f), TenantsSpec.model_validate(t)


def run_scenario(sweep: dict, scenario: dict, data_dir: str | None) -> tuple[dict, bytes]:
    """One scenario, start to end: (results, jobs.parquet bytes). Runs in a worker."""
    from kraft.energy.books import inputs_for
    from kraft.sim.failures import FailureModel
    from kraft.sim.metrics import job_table
    from kraft.sim.run import simulate
    from kraft.sim.traces import load_trace
    from kraft.sim.workload import JobDefaults
    from kraft.spec.load import load_fleet, load_tenants

    spec = SweepSpec.model_validate(sweep)
    p = scenario["params"]
    data = Path(data_dir) if data_dir else None
    base = load_fleet(scenario["fleet"])
    fleet, tenants = apply_parameters(base, load_tenants(spec.tenants or scenario["fleet"]), p)
    # `load` is offered to the fleet as specified: added GPUs see the same arrivals
    load = spec.load * base.gpu_count / fleet.gpu_count if spec.load else None
    trace = load_trace(scenario["trace"], data, spec.seed)
    energy = inputs_for(fleet, 2024, data) if spec.energy or spec.shift else None
    defaults = JobDefaults(flexible_max_gpus=p["flexible_max_gpus"],
                           flex_window_s=p["flex_window_h"] * 3600)
    failures = FailureModel(p["failure_rate"], spec.seed) if p["failure_rate"] else None
    run = simulate(fleet, tenants, trace, scenario["policy"], load=load, seed=spec.seed,
                   defaults=defaults, energy=energy, shift_by=spec.shift, failures=failures)
    run.results["scenario"] = {**scenario, "sweep": spec.name}
    buf = io.BytesIO()
    pq.write_table(job_table(run.outcome.jobs, run.job_energy), buf)
    return run.results, buf.getvalue()


def save(out: Path, scenario: dict, results: dict, jobs: bytes) -> None:
    """Write one scenario's folder atomically: a half-written scenario never counts as done."""
    final = out / scenario["id"]
    tmp = out / f".{scenario['id']}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "jobs.parquet").write_bytes(jobs)
    (tmp / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.rename(final)


def done(out: Path, scenario: dict) -> bool:
    return (out / scenario["id"] / "results.json").exists()


def summary_rows(out: Path, scenarios: list[dict]) -> list[dict]:
    rows = []
    for s in scenarios:
        r = json.loads((out / s["id"] / "results.json").read_text())
        site = r.get("energy", {}).get("per_site", {})
        rows.append({
            "id": s["id"], "fleet": s["fleet"], "trace": s["trace"], "policy": s["policy"],
            **s["params"], "fleet_gpus": r["fleet_gpus"],
            "jct_mean_h": round(r["overall"]["jct_s"]["mean"] / 3600, 3),
            "queued_mean_h": round(r["overall"]["queue_delay_s"]["mean"] / 3600, 3),
            "slowdown": r["overall"]["slowdown"], "utilization": r["utilization"],
            "preemptions": r["preemptions"],
            "preemptions_by_cause": r.get("preemptions_by_cause", {}),
            "failures": r.get("failures", {}).get("interruptions", 0),
            "facility_mwh": round(sum(v["facility_kwh"] for v in site.values()) / 1e3, 3),
            "carbon_location_t": round(sum(v["carbon_location_kg"] for v in site.values())
                                       / 1e3, 3)})
    return rows


def labels(scenarios: list[dict]) -> dict[str, str]:
    """Each scenario's name by what varies across the sweep only (fleet, trace, policy, the
    swept parameters): `fifo, gpus_added=64` rather than its ~130-character id."""
    varies = [k for k in ("fleet", "trace", "policy") if len({s[k] for s in scenarios}) > 1]
    swept = [k for k in PARAMS if len({s["params"][k] for s in scenarios}) > 1]
    out = {}
    for s in scenarios:
        parts = [s[k] for k in varies] + [f"{k}={s['params'][k]:g}" for k in swept]
        out[s["id"]] = ", ".join(parts) or s["policy"]
    return out


CAUSES = {"reservation": "a reserved tenant taking back GPUs lent to others",
          "node out of service": "nodes taken out of service",
          "operator": "the operator"}


def explain_preemptions(rows: list[dict]) -> list[str]:
    """Where adding GPUs raised preemptions, say by which cause and why: a bigger fleet leaves
    less work waiting, so more of it runs on GPUs lent from a reservation when the reserved
    tenant's jobs arrive, and the reservation takes them back."""
    said = []
    key = ("fleet", "trace", "policy", *(k for k in PARAMS if k != "gpus_added"))
    named = [k for k in key if len({str(r[k]) for r in rows}) > 1 and k != "policy"]
    base = {tuple(r[k] for k in key): r for r in rows if r["gpus_added"] == 0}
    for r in rows:
        b = base.get(tuple(r[k] for k in key))
        if b is None or r is b or r["preemptions"] < max(1.2 * b["preemptions"],
                                                         b["preemptions"] + 10):
            continue
        before, after = b["preemptions_by_cause"], r["preemptions_by_cause"]
        causes = sorted(after, key=lambda c: after[c] - before.get(c, 0), reverse=True)
        top = causes[0] if causes else None
        what = (CAUSES.get(top, f"{top}'s own ranking (a preemptive policy)") if top
                else "unknown causes")
        why = (f" With {r['gpus_added']} GPUs more, less work waits (queueing delay "
               f"{b['queued_mean_h']:.2f} h -> {r['queued_mean_h']:.2f} h mean), so more of it "
               f"is running on lent GPUs when the reserved tenant's jobs arrive."
               if top == "reservation" else "")
        where = "".join(f", {k}={r[k]:g}" if isinstance(r[k], float | int) else f", {r[k]}"
                        for k in named)
        said.append(f"{r['policy']}{where}, {r['gpus_added']} GPUs added: preemptions "
                    f"{b['preemptions']:,} -> {r['preemptions']:,}, "
                    f"{after.get(top, 0) - before.get(top, 0):+,} of them by {what}.{why}")
    return said
