"""What temporal shifting bought and cost: carbon of the flexible jobs run carbon-agnostic,
shifted, and at the physical limit (each flexible job alone at the best start of its window,
ignoring capacity), with the completion-time price paid."""

from __future__ import annotations

import numpy as np

from kraft.energy.books import EnergyInputs, hourly_factors
from kraft.signals.series import HourlyIntegral
from kraft.sim.run import SimRun
from kraft.spec.models import FleetSpec

# Wiesner et al., "Let's Wait Awhile: How Temporal Workload Shifting Can Reduce Carbon
# Emissions in the Cloud", Middleware 2021: ML training jobs in Germany, non-interruptible.
LETS_WAIT_AWHILE_DE_ML = 0.059


def shift_summary(agnostic: SimRun, shifted: SimRun, fleet: FleetSpec,
                  inputs: EnergyInputs, forecast: SimRun | None = None,
                  forecast_name: str = "") -> dict:
    """`shifted` planned with the recorded series (a perfect forecast); `forecast`, where
    given, with a forecast that knows only the past (`forecast_name`)."""
    jobs_a, jobs_s = agnostic.outcome.jobs, shifted.outcome.jobs
    flexible = np.array([j.flex_window_s > 0 for j in jobs_a])
    carbon_a = agnostic.job_energy["carbon_location_kg"]
    carbon_s = shifted.job_energy["carbon_location_kg"]
    it_a = agnostic.job_energy["it_kwh"]

    # The limit: each flexible job's energy at the best start of its window, at its site.
    hours = len(next(iter(inputs.sites.values())).carbon.values)
    factor = {}
    for site in fleet.sites:
        pue_h, ci_h, _ = hourly_factors(site, inputs.sites[site.name], hours)
        factor[site.name] = HourlyIntegral(pue_h * ci_h)
    bound = 0.0
    for k in np.flatnonzero(flexible):
        j = jobs_a[k]
        if j.pool is None:
            continue
        starts = np.arange(j.submit_s, j.submit_s + j.flex_window_s + 1, 3600.0)
        best = factor[j.pool.site.name].mean(starts, starts + j.duration_s).min()
        bound += it_a[k] * best / 1e3

    def jct(jobs, mask):
        return float(np.mean([j.finish_s - j.submit_s for j, m in zip(jobs, mask) if m]))

    base = float(carbon_a[flexible].sum())
    moved = float(carbon_s[flexible].sum())
    out = {
        "flexible_jobs": int(flexible.sum()),
        "jobs": len(jobs_a),
        "carbon_location_kg": {"agnostic": base, "shifted": moved, "limit": bound},
        "saving": {"shifted": 1 - moved / base if base else 0.0,
                   "limit": 1 - bound / base if base else 0.0,
                   "lets_wait_awhile_de_ml": LETS_WAIT_AWHILE_DE_ML},
        "all_jobs_carbon_location_kg": {"agnostic": float(carbon_a.sum()),
                                        "shifted": float(carbon_s.sum())},
        "jct_mean_s": {"flexible_agnostic": jct(jobs_a, flexible),
                       "flexible_shifted": jct(jobs_s, flexible),
                       "all_agnostic": jct(jobs_a, np.ones_like(flexible)),
                       "all_shifted": jct(jobs_s, np.ones_like(flexible))},
        "forecast": {"shifted": "oracle (the recorded series: perfect)"},
    }
    if forecast is not None:
        carbon_f = forecast.job_energy["carbon_location_kg"]
        real = float(carbon_f[flexible].sum())
        out["carbon_location_kg"]["shifted_forecast"] = real
        out["saving"]["shifted_forecast"] = 1 - real / base if base else 0.0
        out["all_jobs_carbon_location_kg"]["shifted_forecast"] = float(carbon_f.sum())
        out["jct_mean_s"]["flexible_shifted_forecast"] = jct(forecast.outcome.jobs, flexible)
        out["jct_mean_s"]["all_shifted_forecast"] = jct(forecast.outcome.jobs,
                                                        np.ones_like(flexible))
        out["forecast"]["shifted_forecast"] = forecast_name
    return out
