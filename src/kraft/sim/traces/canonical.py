"""The canonical job-trace format: one row per job, times in seconds from the trace start.

Columns (CSV header or Parquet schema); optional ones may be absent or empty:
  job_id (str), submit_s (float >= 0), duration_s (float > 0), gpus (int >= 1), tenant (str),
  gpu_model (str, optional), checkpoint_interval_s (float, optional),
  restart_cost_s (float, optional), preemptible (bool, optional), time_limit_s (float, optional),
  flex_window_s (float, optional)
Rows with a missing or out-of-range value are counted by reason and dropped, never fatal. A
value of the wrong kind (`ten` as a time, `1.5` GPUs) is an error naming the file, the line, the
column and what is allowed: the file itself is wrong, and guessing would hide it.
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
ALLOWED = {"submit_s": "a number of seconds >= 0", "duration_s": "a number of seconds > 0",
           "gpus": "a whole number >= 1", "checkpoint_interval_s": "a number of seconds or empty",
           "restart_cost_s": "a number of seconds or empty",
           "preemptible": "true, false or empty", "time_limit_s": "a number of seconds or empty",
           "flex_window_s": "a number of seconds or empty"}


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
           dropped: Counter, first_line: int | None = 2) -> Trace:
    """Fill optional columns, drop unusable rows (counting why), sort by submit time.
    `first_line`: the file line of the table's first row, where rows are the file's lines in
    order (a CSV with a header: 2), else None."""
    cols = {}
    for f in CANONICAL_SCHEMA:
        if f.name in table.column_names:
            cols[f.name] = _cast(source or name, table[f.name], f, first_line)
        elif f.name in REQUIRED:
            raise TraceError(f"{source or name}: required column {f.name!r} is missing "
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


def _cast(where: str, column: pa.ChunkedArray, f: pa.Field,
          first_line: int | None) -> pa.ChunkedArray:
    """`column` as `f`'s type, or a TraceError naming the first value that is not one."""
    try:
        return column.cast(f.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for i, value in enumerate(column.to_pylist()):
        try:
            pa.array([value]).cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            at = f"line {first_line + i}" if first_line is not None else f"job {i + 1}"
            raise TraceError(f"{where}: {at}, column {f.name}: {value!r} is not "
                             f"{ALLOWED.get(f.name, f.type)}") from None
    raise TraceError(f"{where}: column {f.name} cannot be read as {f.type}")


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
    return finish(path.stem, table, str(path), table.num_rows, Counter(),
                  None if path.suffix == ".parquet" else 2)


def write_canonical(trace: Trace, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(trace.table, path)
    else:
        pacsv.write_csv(trace.table, path)
