"""What ran: one record, written by both bodies, read by the books.

Every stretch a job ran without interruption is one segment: which job and attempt, on which
pool (site x GPU model x node size) and nodes, how many GPUs, from when to when, and how it
ended. The simulator appends segments as its events happen (`kraft.sim.engine.Segments`); the
live service writes a row per attempt as it starts and ends (`kraft.control.store.AttemptRow`).
Both turn them into a `Record`, and `kraft.energy.books.books` reads only that.

Times are seconds on the record's clock; `origin_s` is the epoch second of t = 0. The twin's
clock starts at hour 0 of its signal year (origin 0); the live record is put on the clock of
its UTC year (origin = 1 January 00:00 UTC), so hour h of the record reads hour h of a year's
hourly series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

# How a segment ended: the state its job moved to (the live states' names).
ENDINGS = ("succeeded", "preempted", "failed", "cancelled", "running")
ENDED = {name: i for i, name in enumerate(ENDINGS)}


@dataclass
class Record:
    job: np.ndarray  # int64, index into the job_* lists
    attempt: np.ndarray  # int64, 1 for a job's first start
    pool: np.ndarray  # int64, index into ClusterState(fleet).pools
    gpus: np.ndarray  # int64
    start_s: np.ndarray  # float64
    end_s: np.ndarray  # float64 (a running segment: the record's end)
    ended: np.ndarray  # int8, index into ENDINGS
    job_tenant: list[str]
    job_tier: list[str]  # Tier values
    job_name: list[str]
    end_of_record_s: float  # the twin's last event; live: now
    origin_s: float = 0.0
    nodes: list = field(default_factory=list)  # per segment: the node names it ran on
    job_ids: list = field(default_factory=list)  # per job: the body's id (live: database id)

    def __len__(self) -> int:
        return len(self.job)

    @property
    def n_jobs(self) -> int:
        return len(self.job_tenant)


def year_origin_s(epoch_s: float) -> float:
    """1 January 00:00 UTC of the year `epoch_s` falls in."""
    year = datetime.fromtimestamp(epoch_s, UTC).year
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()


SEGMENT_FIELDS = ("job", "attempt", "pool", "gpus", "start_s", "end_s", "ended")
JOB_FIELDS = ("job_tenant", "job_tier", "job_name", "job_ids")


def write_record(record: Record, path) -> None:
    """The record as Parquet: one row per segment; the per-job lists and the clock in the
    file's metadata (a results folder's `record.parquet`, for the reports)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({**{k: getattr(record, k) for k in SEGMENT_FIELDS},
                      "nodes": pa.array([list(n) for n in record.nodes]
                                        if record.nodes else [[]] * len(record),
                                        pa.list_(pa.string()))})
    meta = {k: getattr(record, k) for k in JOB_FIELDS}
    meta.update(end_of_record_s=record.end_of_record_s, origin_s=record.origin_s)
    pq.write_table(table.replace_schema_metadata({"kraft.record": json.dumps(meta)}), path)


def read_record(path) -> Record:
    import json

    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"kraft.record"])
    return Record(**{k: table[k].to_numpy() for k in SEGMENT_FIELDS},
                  nodes=table["nodes"].to_pylist(), **meta)
