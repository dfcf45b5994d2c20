"""Job traces: one loader per format, all producing the canonical table (see docs/traces.md)."""

from kraft.sim.traces.canonical import CANONICAL_SCHEMA, Trace, TraceError, read_canonical
from kraft.sim.traces.registry import FORMATS, load_trace

__all__ = ["CANONICAL_SCHEMA", "FORMATS", "Trace", "TraceError", "load_trace", "read_canonical"]
