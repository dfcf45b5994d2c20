"""Scheduling options shared by `kraft simulate` and `kraft serve`: one set of flags, one
`SchedulingOptions`, one construction (kraft.sched.build)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kraft.sched.build import SchedulingOptions
from kraft.sched.policy import make_policy, parse_value, policy_names
from kraft.sched.scheduler import SchedulerConfig
from kraft.signals.forecast import make_forecast

PolicyOpt = Annotated[str, typer.Option(
    help=f"scheduling policy, one of {', '.join(policy_names())}; parameters inline as "
         "NAME:KEY=VALUE[,KEY=VALUE], e.g. las:thresholds_gpu_s=[1800,7200] or fifo:fill=greedy "
         "(docs/scheduler.md)")]
ParamOpt = Annotated[Optional[list[str]], typer.Option(
    "--policy-param", "--param",
    help="a policy parameter, KEY=VALUE (repeat), e.g. --policy-param half_life_s=43200")]
DepthOpt = Annotated[int, typer.Option(help="jobs examined past the first that does not fit")]
ShiftOpt = Annotated[Optional[str], typer.Option(
    help="shift flexible jobs to low 'carbon' or 'price' hours of their window")]
PreferOpt = Annotated[Optional[str], typer.Option(
    help="try first the allowed site with the lowest 'carbon' or 'price' now, or the lowest "
         "'latency' to the tenant's region (default: pack)")]


def scheduling_options(policy: str, params: list[str] | None, scan_depth: int,
                       shift: str | None, prefer: str | None,
                       forecast: str) -> SchedulingOptions:
    """Checked options, or a ValueError that says what is wrong."""
    parsed = {}
    for item in params or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--policy-param {item!r}: give KEY=VALUE")
        parsed[key] = parse_value(value)
    make_policy(policy, **parsed)  # a ValueError naming the known policies or parameters
    for name, value in (("--shift", shift), ("--prefer", prefer)):
        allowed = ("carbon", "price") if name == "--shift" else ("carbon", "price", "latency")
        if value is not None and value not in allowed:
            raise ValueError(f"{name} {value!r}? Use {' or '.join(allowed)}")
    make_forecast(forecast)
    return SchedulingOptions(policy, parsed, SchedulerConfig(scan_depth=scan_depth), shift,
                             prefer, forecast)
