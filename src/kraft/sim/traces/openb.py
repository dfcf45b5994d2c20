"""Alibaba openb GPU cluster pods (clusterdata cluster-trace-gpu-v2023, ATC'23 FGD paper).

Columns used: name, num_gpu, gpu_milli, gpu_spec, qos, creation_time, scheduled_time,
deletion_time (seconds). Mapping: submit_s = creation_time; duration_s = deletion_time -
scheduled_time; gpus = num_gpu, where a fractional GPU (gpu_milli < 1000) takes one whole GPU
because Kraft does not share GPUs; tenant = the QoS class (LS, BE, Burstable, Guaranteed);
gpu_model = gpu_spec when it names one model. Pods without a GPU or never scheduled are
counted and dropped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from kraft.sim.traces.canonical import Trace, TraceError, finish


def load_openb(path: Path) -> Trace:
    try:
        raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"gpu_spec": pa.string(), "qos": pa.string(),
                          "scheduled_time": pa.float64(), "deletion_time": pa.float64()},
            strings_can_be_null=True))
    except (OSError, pa.ArrowInvalid) as e:
        raise TraceError(f"{path}: cannot read as an openb pod list: {e}") from None
    need = {"name", "num_gpu", "creation_time", "scheduled_time", "deletion_time"}
    missing = sorted(need - set(raw.column_names))
    if missing:
        raise TraceError(f"{path}: not an openb pod list, missing columns {missing}")
    dropped: Counter = Counter()
    gpus = raw["num_gpu"].to_numpy()
    sched = raw["scheduled_time"].to_numpy(zero_copy_only=False)
    keep = gpus > 0
    dropped["no GPU requested (CPU-only pod)"] = int((~keep).sum())
    never = keep & np.isnan(sched)
    dropped["never scheduled (no run time)"] = int(never.sum())
    keep &= ~never
    raw = raw.filter(pa.array(keep))
    n = raw.num_rows
    qos = raw["qos"] if "qos" in raw.column_names else pa.array(["default"] * n)
    spec = raw["gpu_spec"] if "gpu_spec" in raw.column_names else pa.nulls(n, pa.string())
    models = [s if s and "|" not in s else None for s in spec.to_pylist()]
    table = pa.table({
        "job_id": raw["name"].cast(pa.string()),
        "submit_s": raw["creation_time"].cast(pa.float64()),
        "duration_s": pa.array(raw["deletion_time"].to_numpy(zero_copy_only=False)
                               - raw["scheduled_time"].to_numpy(zero_copy_only=False)),
        "gpus": raw["num_gpu"],
        "tenant": qos.cast(pa.string()),
        "gpu_model": pa.array(models, pa.string()),
    })
    return finish("openb", table, str(path), n + sum(dropped.values()), +dropped,
                  first_line=None)  # rows were filtered: their lines are not known here
