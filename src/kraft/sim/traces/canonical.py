"""The canonical job-trace format: one row per job, times in seconds from the trace start.

Columns (CSV header or Parquet schema); optional ones may be absent or empty:
  job_id (str), submit_s (float >= 0), duration_s (float > 0), gpus (int >= 1), tenant (str),
  gpu_model (str, optional), checkpoint_interval_s (float, optional),
  restart_cost_s (float, optional), preemptible (bool, optional), time_limit_s (float, optional),
  flex_window_s (float, optional)
Rows that cannot be used are counted by reason and dropped, never fatal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CANONICAL_SCHEMA = pa.schema([
    ("job_id", pa.string()),
    ("submit_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("gpus", pa.int64()),
    ("tenant", pa.string()),
    ("gpu_model", pa.string()),
    ("checkpoint_interval_s", pa.float64()),
    ("restart_cost_s", pa.float64()),
    ("preemptible", pa.bool_()),
    ("time_limit_s", pa.float64()),
    ("flex_window_s", pa.float64()),
])
REQUIRED = ("job_id", "submit_s", "duration_s", "gpus", "tenant")


class TraceError(ValueError):
    """A trace that cannot be read at all (missing file or required column)."""


@dataclass
class Trace:
    name: str
    table: pa.Table  # canonical schema, sorted by submit_s (stable)
    source: str = ""
    rows_read: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows

    @property
    def n_jobs(self) -> int:
        return self.table.num_rows


def finish(name: str, table: pa.Table, source: str, rows_read: int,
           dropped: Counter) -> Trace:
    """Fill optional columns, drop unusable rows (counting why), sort by submit time."""
    cols = {}
    for f in CANONICAL_SCHEMA:
        if f.name in table.column_names:
            cols[f.name] = table[f.name].cast(f.type)
        elif f.name in REQUIRED:
            raise TraceError(f"{name}: required column {f.name!r} is missing "
                             f"(have: {', '.join(table.column_names)})")
        else:
            cols[f.name] = pa.nulls(table.num_rows, f.type)
    table = pa.table(cols, schema=CANONICAL_SCHEMA)
    checks = [
        ("submit_s missing or negative", pc.greater_equal(table["submit_s"], 0)),
        ("duration_s missing or not positive", pc.greater(table["duration_s"], 0)),
        ("gpus missing or below 1", pc.greater_equal(table["gpus"], 1)),
        ("tenant missing", pc.invert(pc.equal(table["tenant"], ""))),
    ]
    keep = np.ones(table.num_rows, dtype=bool)
    for reason, ok in checks:
        ok = pc.fill_null(ok, False).to_numpy(zero_copy_only=False) & keep
        bad = int(keep.sum() - ok.sum())
        if bad:
            dropped[reason] += bad
        keep = ok
    table = table.filter(pa.array(keep))
    order = np.argsort(table["submit_s"].to_numpy(), kind="stable")
    return Trace(name, table.take(pa.array(order)), source, rows_read, dropped)


def read_canonical(path: Path) -> Trace:
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={"job_id": pa.string(), "tenant": pa.string(),
                              "gpu_model": pa.string()},
                strings_can_be_null=True))
    except (OSError, pa.ArrowInvalid) as e:
        raise TraceError(f"{path}: cannot read as a canonical trace: {e}") from None
    return finish(path.stem, table, str(path), table.num_rows, Counter())


def write_canonical(trace: Trace, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(trace.table, path)
    else:
        pacsv.write_csv(trace.table, path)
