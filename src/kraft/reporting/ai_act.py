"""EU AI Act documentation of a general-purpose model's training run (Art. 51-53, Annex XI
section 1, 2(d)-(e)): the compute used, its method, the training time and the energy, and
the lines the compute crosses. A run is one job, or the tenant's jobs whose names match a
pattern (a run resumed or staged as several jobs: `pretrain-7b-*`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from fnmatch import fnmatchcase

import numpy as np

from kraft.energy.models import AI_ACT_SYSTEMIC_FLOP
from kraft.record import ENDED, Record

# The Commission's guidelines on general-purpose AI models (July 2025): a model trained with
# more than 10^23 FLOP that can generate language (or images, video) is indicatively one.
AI_ACT_GPAI_INDICATIVE_FLOP = 1e23


def ai_act_report(record: Record, cols: dict[str, np.ndarray], origin: datetime,
                  tenant: str, run: str, mfu: float) -> dict:
    jobs = [j for j in range(record.n_jobs)
            if record.job_tenant[j] == tenant and fnmatchcase(record.job_name[j], run)]
    if not jobs:
        raise ValueError(f"tenant {tenant} ran no job named {run!r} (a name or a pattern "
                         f"such as 'pretrain-*')")
    seg = np.isin(record.job, jobs)
    flop = float(cols["flop"][seg].sum())
    first, last = float(record.start_s[seg].min()), float(record.end_s[seg].max())
    running = bool((record.ended[seg] == ENDED["running"]).any())
    notices = []
    if flop > AI_ACT_SYSTEMIC_FLOP:
        notices.append("above 10^25 FLOP: presumed a general-purpose model with systemic "
                       "risk (Art. 51(2)); the provider notifies the Commission without delay "
                       "and within two weeks of knowing it will be met (Art. 52(1))")
    elif flop > AI_ACT_GPAI_INDICATIVE_FLOP:
        notices.append("above 10^23 FLOP: indicatively a general-purpose AI model (Commission "
                       "guidelines, 2025): the Art. 53 documentation applies if it generates "
                       "language, images or video")
    return {
        "report": "ai-act", "tenant": tenant, "run": run,
        "jobs": [{"id": record.job_ids[j] if record.job_ids else j + 1,
                  "name": record.job_name[j]} for j in jobs],
        "training_compute_flop": flop,
        "method": f"GPU-seconds x the GPU model's peak dense BF16 FLOP/s x an assumed model "
                  f"FLOP utilisation of {mfu:.2f}: an estimate from the books, not counted "
                  f"operations (Annex XI 2(d) asks for the compute and how it was estimated)",
        "gpu_hours": float(cols["gpu_hours"][seg].sum()),
        "training_start_utc": (origin + timedelta(seconds=first)).isoformat(),
        "training_end_utc": (origin + timedelta(seconds=last)).isoformat(),
        "training_time_h": (last - first) / 3600,
        "still_running": running,
        "energy_it_kwh": float(cols["it_kwh"][seg].sum()),
        "energy_facility_kwh": float(cols["facility_kwh"][seg].sum()),
        "energy_source": "modelled: the power model (catalog rated and idle power, host share, "
                         "PUE) over measured run times; no meter (Annex XI 2(e): known or "
                         "estimated energy)",
        "thresholds_flop": {"gpai_indicative": AI_ACT_GPAI_INDICATIVE_FLOP,
                            "systemic_risk": AI_ACT_SYSTEMIC_FLOP},
        "notices": notices,
    }
