"""Name -> trace. Real traces are read from the user's data folder, never bundled whole."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

from kraft.sim.traces.canonical import REQUIRED, Trace, TraceError, read_canonical
from kraft.sim.traces.openb import load_openb
from kraft.sim.traces.philly import load_philly
from kraft.sim.traces.synthetic import synthetic

FORMATS = {"canonical": read_canonical, "philly": load_philly, "openb": load_openb}

# Named traces inside a data folder laid out like the project's shared data.
NAMED = {
    "philly": ("philly", "traces/philly/philly.csv"),
    "openb": ("openb", "traces/alibaba-openb-2023/openb_pod_list_default.csv"),
    "openb-multigpu50": ("openb", "traces/alibaba-openb-2023/openb_pod_list_multigpu50.csv"),
}
BUNDLED = {"philly-sample": "philly-sample.csv"}


def detect_format(path: Path) -> str:
    if path.suffix == ".parquet":
        return "canonical"
    try:
        with path.open(newline="") as f:
            header = set(next(csv.reader(f), []))
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    if len(header & set(REQUIRED)) >= 2:  # canonical, maybe missing a column: finish says which
        return "canonical"
    if {"timestamp", "duration", "num_gpus", "cluster"} <= header:
        return "philly"
    if {"num_gpu", "creation_time", "scheduled_time"} <= header:
        return "openb"
    raise TraceError(f"{path}: unknown trace format: its first line, read as the header, is "
                     f"{', '.join(sorted(header))}; known formats: {', '.join(FORMATS)}, whose "
                     f"headers name {', '.join(REQUIRED)} (canonical), timestamp, duration, "
                     f"num_gpus, cluster (philly) -- see docs/traces.md")


def load_trace(spec: str, data_dir: Path | None, seed: int = 0,
               fmt: str | None = None) -> Trace:
    """`spec`: a bundled name, a name under the data folder, `synthetic:N`, or a file path."""
    if spec in BUNDLED:
        return read_canonical(Path(str(resources.files("kraft") / "data" / "traces"
                                       / BUNDLED[spec])))
    if spec.startswith("synthetic:"):
        try:
            n = int(spec.split(":", 1)[1].replace("_", ""))
        except ValueError:
            raise TraceError(f"{spec}: expected synthetic:N with N a job count") from None
        return synthetic(n, seed)
    if spec in NAMED:
        fmt_name, rel = NAMED[spec]
        if data_dir is None:
            raise TraceError(f"trace {spec!r} is read from the shared data folder: pass "
                             f"--shared-data DIR or set KRAFT_DATA_DIR (DIR/{rel})")
        path = data_dir / rel
        if not path.exists():
            raise TraceError(f"trace {spec!r}: {path} not found (is --shared-data right?)")
        return FORMATS[fmt_name](path)
    path = Path(spec)
    if not path.exists():
        raise TraceError(f"{spec}: no such file, and not a known trace name (known: "
                         f"{', '.join([*BUNDLED, *NAMED, 'synthetic:N'])})")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt](path)
