"""A report field: its value, unit, where it comes from, and the law that asks for it."""

from __future__ import annotations

from kraft.cluster.state import ClusterState
from kraft.energy.power import gpu_power

# Where a figure comes from. `measured`: Kraft counted it (run times, GPUs); `modelled`:
# Kraft computed it from its power, PUE and water models; `operator`: the fleet spec or the
# site file says so; `not given`: a field the operator has yet to fill in.
SOURCES = ("measured", "modelled", "operator", "not given")


def field(value, unit: str, source: str, ref: str) -> dict:
    if value is None:
        source = "not given"
    assert source in SOURCES, source
    return {"value": value, "unit": unit, "source": source, "ref": ref}


def installed_it_power_kw(cluster: ClusterState) -> dict[str, float]:
    """Per site: every GPU at its busy power (rated, or the site's cap) with its host's share:
    the IT equipment's power demand as installed."""
    out: dict[str, float] = {}
    for p in cluster.pools:
        w = gpu_power(p.site, p.model, 1.0).busy_w
        out[p.site.name] = out.get(p.site.name, 0.0) + p.total_gpus * w / 1e3
    return out
