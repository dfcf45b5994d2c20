"""A synthetic trace for scale tests: N jobs with Philly-like gang sizes, scaled up.

Not real data: used to measure speed on fleets far larger than any public trace. Arrivals are
Poisson; gang sizes are powers of two; run times are log-normal (median 1 h, sigma 1,
capped at 2 days).
The seed fully determines the trace.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from kraft.sim.traces.canonical import Trace, finish

GANG_SIZES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
GANG_WEIGHTS = np.array([50, 8, 8, 14, 7, 5, 3, 2, 1.5, 1, 0.5])
TENANTS = ["lab"] + [f"startup-{i:02d}" for i in range(1, 21)] + ["batch"]
TENANT_WEIGHTS = np.array([30.0] + [2.5] * 20 + [20.0])


def synthetic(n_jobs: int, seed: int, mean_interarrival_s: float = 10.0) -> Trace:
    rng = np.random.default_rng(seed)
    submit = np.cumsum(rng.exponential(mean_interarrival_s, n_jobs))
    submit -= submit[0]
    gpus = rng.choice(GANG_SIZES, n_jobs, p=GANG_WEIGHTS / GANG_WEIGHTS.sum())
    duration = np.minimum(np.round(rng.lognormal(np.log(3600), 1.0, n_jobs)) + 60, 2 * 86400)
    tenant = rng.choice(len(TENANTS), n_jobs, p=TENANT_WEIGHTS / TENANT_WEIGHTS.sum())
    table = pa.table({
        "job_id": pa.array([f"syn-{i}" for i in range(n_jobs)]),
        "submit_s": pa.array(submit),
        "duration_s": pa.array(duration.astype(float)),
        "gpus": pa.array(gpus.astype(np.int64)),
        "tenant": pa.DictionaryArray.from_arrays(pa.array(tenant.astype(np.int32)),
                                                 pa.array(TENANTS)).cast(pa.string()),
    })
    return finish(f"synthetic-{n_jobs}", table, f"synthetic, seed {seed}", n_jobs, Counter())
