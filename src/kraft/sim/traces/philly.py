"""Microsoft Philly job list (processed by the Sia artifact; CC BY 4.0, Jeon et al. ATC'19).

Columns: timestamp (submit, YYYY-MM-DD HH:MM:SS), duration (s), num_gpus, gpu_time, cluster.
Mapping: submit_s = timestamp - earliest timestamp; tenant = the virtual cluster id. The trace
records no GPU model, checkpointing or preemptibility: those columns stay empty and the
simulation's defaults apply.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kraft.sim.traces.canonical import Trace, TraceError, finish


def load_philly(path: Path) -> Trace:
    try:
        raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"timestamp": pa.timestamp("s"), "cluster": pa.string()}))
    except (OSError, pa.ArrowInvalid) as e:
        raise TraceError(f"{path}: cannot read as a Philly trace: {e}") from None
    missing = {"timestamp", "duration", "num_gpus", "cluster"} - set(raw.column_names)
    if missing:
        raise TraceError(f"{path}: not a Philly trace, missing columns {sorted(missing)}")
    ts = raw["timestamp"].cast(pa.int64())
    submit = pc.subtract(ts, pc.min(ts)).cast(pa.float64())
    table = pa.table({
        "job_id": pa.array([f"philly-{i}" for i in range(raw.num_rows)]),
        "submit_s": submit,
        "duration_s": raw["duration"],
        "gpus": raw["num_gpus"],
        "tenant": raw["cluster"],
    })
    return finish("philly", table, str(path), raw.num_rows, Counter())
