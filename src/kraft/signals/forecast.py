"""Forecasts of an hourly signal (carbon intensity, price): what shifting plans with.

`Oracle` reads the recorded series itself: a perfect forecast, which only a replay can have
(the twin's default, labelled so in every report). `RecentDays` uses only the past: each
future hour is the mean of the same hour of the day over the last `days` days observed before
now (a seasonal-naive forecast; Electricity Maps and WattTime publish better ones, which
`SeriesForecast` reads from a file). The live service never uses the oracle.

A forecast is asked at time `now` (seconds on the series' clock: hour h is values[h]) for the
`hours` hours from floor(now / 3600) on, and returns one value per hour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa


class Forecast(Protocol):
    name: str
    perfect: bool

    def window(self, values: np.ndarray, now_s: float, hours: int) -> np.ndarray: ...


class Oracle:
    name = "oracle"
    perfect = True

    def window(self, values: np.ndarray, now_s: float, hours: int) -> np.ndarray:
        first = int(now_s // 3600)
        return values[(first + np.arange(hours)) % len(values)]


class RecentDays:
    """Seasonal naive: hour h is the mean of hours h - 24 k for the `days` most recent days
    already past at `now` (the current hour counts as observed: its intensity is published
    live)."""

    perfect = False

    def __init__(self, days: int = 7):
        if days < 1:
            raise ValueError("a forecast from recent days needs at least 1 day")
        self.days = days
        self.name = f"recent-days-{days}"

    def window(self, values: np.ndarray, now_s: float, hours: int) -> np.ndarray:
        first = int(now_s // 3600)
        h = first + np.arange(hours)
        # the latest observed hour with h's hour of the day, then `days` days back from it
        back_days = np.maximum(1, np.ceil((h - first) / 24)).astype(np.int64)
        back_days[h == first] = 0  # this hour is known
        latest = h - 24 * back_days
        out = np.zeros(hours)
        for k in range(self.days):
            out += values[(latest - 24 * k) % len(values)]
        out /= self.days
        out[0] = values[first % len(values)]
        return out


class SeriesForecast:
    """Forecasts issued ahead, read from a file (docs/energy.md, "Forecast files"): for each
    issue hour, the values it forecast for the hours after it. Asked at `now`, it answers
    with the latest forecast issued at or before now; hours beyond it repeat its last value.
    `issued`: {issue hour: values for the hours from it on}."""

    perfect = False

    def __init__(self, issued: dict[int, np.ndarray], name: str = "file"):
        if not issued:
            raise ValueError("a forecast file with no forecast in it")
        self.issue_hours = np.array(sorted(issued))
        self.issued = issued
        self.name = name

    def window(self, values: np.ndarray, now_s: float, hours: int) -> np.ndarray:
        first = int(now_s // 3600)
        k = np.searchsorted(self.issue_hours, first, side="right") - 1
        if k < 0:  # nothing issued yet: fall back on what is known now
            return np.full(hours, values[first % len(values)])
        issue = int(self.issue_hours[k])
        f = self.issued[issue][first - issue:]
        if len(f) == 0:
            f = self.issued[issue][-1:]
        out = np.concatenate([f[:hours], np.full(max(0, hours - len(f)), f[-1])])
        out[0] = values[first % len(values)]
        return out


def load_forecast_file(path: Path) -> SeriesForecast:
    """A CSV of issued forecasts: `issued_at,timestamp,value` (ISO 8601, UTC unless an offset
    is given; one row per forecast hour). Hours count from 1 January of the first issue's
    year, as the live clock's do (kraft.record)."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"issued_at": pa.string(), "timestamp": pa.string(),
                          "value": pa.float64()}))
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"forecast file {path}: {e}") from None
    missing = {"issued_at", "timestamp", "value"} - set(table.column_names)
    if missing:
        raise ValueError(f"forecast file {path}: needs columns issued_at, timestamp, value; "
                         f"missing {', '.join(sorted(missing))}")

    def hours(col: str) -> np.ndarray:
        out = []
        for text in table[col].to_pylist():
            d = datetime.fromisoformat(text)
            out.append((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp())
        return np.array(out)

    issued, at, values = hours("issued_at"), hours("timestamp"), table["value"].to_numpy()
    if not len(issued):
        raise ValueError(f"forecast file {path}: no rows")
    origin = datetime(datetime.fromtimestamp(issued.min(), UTC).year, 1, 1,
                      tzinfo=UTC).timestamp()
    by_issue: dict[int, dict[int, float]] = {}
    for i, t, v in zip(((issued - origin) // 3600).astype(int),
                       ((at - origin) // 3600).astype(int), values):
        if t >= i:
            by_issue.setdefault(int(i), {})[int(t)] = float(v)
    issued_arrays = {}
    for i, rows in by_issue.items():
        first, last = i, max(rows)
        arr = np.full(last - first + 1, np.nan)
        for t, v in rows.items():
            arr[t - first] = v
        # gaps: the hour before's forecast (forward fill), else the next one given
        for k in range(1, len(arr)):
            if np.isnan(arr[k]):
                arr[k] = arr[k - 1]
        arr[np.isnan(arr)] = np.nanmean(arr) if np.isfinite(arr).any() else 0.0
        issued_arrays[i] = arr
    return SeriesForecast(issued_arrays, f"file {path.name}")


def make_forecast(name: str) -> Forecast:
    """`oracle`, `recent-days[-N]` (N days, default 7) or `file:PATH` (issued forecasts)."""
    if name == "oracle":
        return Oracle()
    if name.startswith("file:"):
        return load_forecast_file(Path(name.removeprefix("file:")))
    if name.startswith("recent-days"):
        rest = name.removeprefix("recent-days").lstrip("-")
        try:
            return RecentDays(int(rest) if rest else 7)
        except ValueError:
            pass
    raise ValueError(f"forecast {name!r}? Use oracle (the recorded series: a replay's perfect "
                     f"forecast), recent-days[-N] (the same hour over the last N days) or "
                     f"file:PATH (forecasts issued ahead, CSV issued_at,timestamp,value)")
