"""Hourly series and where they come from.

Canonical format (docs/signals.md): CSV or Parquet with `timestamp` (UTC) and `value`. A
series covers one calendar year (`--signal-year`, default 2024); simulated time t seconds maps
to hour floor(t / 3600) of that year, wrapping around at the year's end. Missing hours are
filled with the previous hour's value and counted.

Kinds and units: `carbon` gCO2e/kWh, location-based, life-cycle (Electricity Maps);
`price` currency/MWh day-ahead; `temperature` degrees C.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

UNITS = {"carbon": "gCO2e/kWh", "price": "EUR/MWh", "temperature": "degC"}


class SignalError(ValueError):
    """A series that cannot be found or read."""


@dataclass(frozen=True)
class HourlySeries:
    kind: str
    name: str
    year: int
    values: np.ndarray  # float64, one per hour of the year
    unit: str
    source: str
    filled_hours: int = 0

    def at(self, t_s: float) -> float:
        return float(self.values[int(t_s // 3600) % len(self.values)])

    def hourly(self, hours: np.ndarray) -> np.ndarray:
        return self.values[hours % len(self.values)]


class HourlyIntegral:
    """Integrals over [a, b) seconds of an hourly step series that repeats every period, in
    O(1) per interval from its prefix sum (the books and temporal shifting both use it)."""

    def __init__(self, hourly: np.ndarray):
        self.x = np.asarray(hourly, dtype=float)
        self.cum = np.concatenate([[0.0], np.cumsum(self.x) * 3600.0])
        self.period_s = len(self.x) * 3600.0

    def at(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        laps, rest = np.divmod(t, self.period_s)
        h = np.minimum((rest // 3600).astype(np.int64), len(self.x) - 1)
        return laps * self.cum[-1] + self.cum[h] + self.x[h] * (rest - h * 3600.0)

    def over(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.at(b) - self.at(a)

    def mean(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.over(a, b) / np.maximum(b - a, 1e-9)


def _year_grid(year: int) -> tuple[int, int]:
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    return start, (end - start) // 3600


def to_hourly(ts_s: np.ndarray, values: np.ndarray, year: int) -> tuple[np.ndarray, int]:
    """Place (UTC seconds, value) samples on the year's hourly grid; fill gaps forward."""
    start, n = _year_grid(year)
    idx = (ts_s - start) // 3600
    ok = (idx >= 0) & (idx < n) & np.isfinite(values)
    if not ok.any():
        raise SignalError(f"no values in {year}")
    grid = np.full(n, np.nan)
    grid[idx[ok].astype(np.int64)] = values[ok]
    missing = np.isnan(grid)
    if missing.any():
        first = np.flatnonzero(~missing)[0]
        grid[:first] = grid[first]
        pos = np.where(~np.isnan(grid), np.arange(n), 0)
        grid = grid[np.maximum.accumulate(pos)]
    return grid, int(missing.sum())


def _utc_seconds(col: pa.ChunkedArray, local_tz: str | None = None) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None and local_tz is not None:
            col = pc.assume_timezone(col, local_tz, ambiguous="earliest", nonexistent="earliest")
        return col.cast(pa.timestamp("s", tz=col.type.tz)).cast(pa.int64()).to_numpy()
    strings = col.to_pylist()
    out = np.empty(len(strings), dtype=np.int64)
    tz = ZoneInfo(local_tz) if local_tz else UTC
    for i, s in enumerate(strings):
        d = datetime.fromisoformat(s)
        out[i] = int((d if d.tzinfo else d.replace(tzinfo=tz)).timestamp())
    return out


def read_canonical(path: Path, kind: str, year: int) -> HourlySeries:
    try:
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise SignalError(f"{path}: cannot read as a series: {e}") from None
    if not {"timestamp", "value"} <= set(table.column_names):
        raise SignalError(f"{path}: a series needs columns 'timestamp' (UTC) and 'value'; "
                          f"has {', '.join(table.column_names)}")
    grid, filled = to_hourly(_utc_seconds(table["timestamp"]),
                             table["value"].to_numpy().astype(float), year)
    return HourlySeries(kind, path.stem, year, grid, UNITS[kind], str(path), filled)


def _shared_carbon(data: Path, zone: str, year: int) -> HourlySeries | None:
    path = data / "grid/carbon-intensity-hourly" / f"{zone}_2021-2024.parquet"
    if not path.exists():
        return None
    t = pq.read_table(path)
    grid, filled = to_hourly(_utc_seconds(t["timestamp"]),
                             t["carbon_intensity"].to_numpy(), year)
    return HourlySeries("carbon", zone, year, grid, UNITS["carbon"],
                        f"Electricity Maps via opendc-traces (ODbL): {path.name}", filled)


def _shared_price(data: Path, zone: str, year: int) -> HourlySeries | None:
    path = data / "grid/day-ahead-prices" / f"processed_{zone}_{year}.csv"
    if not path.exists():
        return None
    t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"Datetime": pa.string()}))
    zone_tz = {"DE-LU": "Europe/Berlin", "FR": "Europe/Paris", "NL": "Europe/Amsterdam",
               "AT": "Europe/Vienna", "CH": "Europe/Zurich"}[zone]
    grid, filled = to_hourly(_utc_seconds(t["Datetime"], zone_tz),
                             t[t.column_names[1]].to_numpy().astype(float), year)
    return HourlySeries("price", zone, year, grid, "EUR/MWh",
                        f"ENTSO-E day-ahead via green-dcc (MIT): {path.name}", filled)


def _shared_temperature(data: Path, name: str, year: int) -> HourlySeries | None:
    if name == "bergen":
        files = sorted((data / "weather/bergen-hourly").glob("*.parquet"))
        if not files:
            return None
        t = pq.read_table(files[0])
        ts_col = "timestamp" if "timestamp" in t.column_names else t.column_names[-1]
        grid, filled = to_hourly(_utc_seconds(t[ts_col]),
                                 t["air_temperature"].to_numpy().astype(float), year)
        return HourlySeries("temperature", name, year, grid, "degC",
                            "MET Norway (CC BY 4.0), station SN50540 Bergen-Florida", filled)
    if name == "frankfurt":
        path = data / "weather/open-meteo-frankfurt-california" / f"DE-LU_{year}.json"
        if not path.exists():
            return None
        hourly = json.loads(path.read_text())["hourly"]
        ts = _utc_seconds(pa.chunked_array([pa.array(hourly["time"])]), "Europe/Berlin")
        grid, filled = to_hourly(ts, np.array(hourly["temperature_2m"], dtype=float), year)
        return HourlySeries("temperature", name, year, grid, "degC",
                            "Open-Meteo historical weather via green-dcc: Frankfurt", filled)
    return None


_SHARED = {"carbon": _shared_carbon, "price": _shared_price, "temperature": _shared_temperature}


def bundled_path(kind: str, name: str, year: int) -> Path:
    folder = resources.files("kraft") / "data" / "signals" / kind
    return Path(str(folder / f"{name}_{year}.parquet"))


def load_series(kind: str, name: str, year: int = 2024,
                data_dir: Path | None = None) -> HourlySeries:
    """A bundled series (`NO-NO2`), one from the shared data folder, or a file path."""
    if kind not in UNITS:
        raise SignalError(f"unknown signal kind {kind!r}; known: {', '.join(UNITS)}")
    bundled = bundled_path(kind, name, year)
    if bundled.exists():
        series = read_canonical(bundled, kind, year)
        return HourlySeries(kind, name, year, series.values, series.unit,
                            f"bundled slice ({_bundled_source(kind)})", series.filled_hours)
    if data_dir is not None:
        found = _SHARED[kind](data_dir, name, year)
        if found is not None:
            return found
    path = Path(name)
    if path.suffix in (".csv", ".parquet") and path.exists():
        return read_canonical(path, kind, year)
    have = sorted(p.stem for p in bundled.parent.glob(f"*_{year}.parquet"))
    raise SignalError(f"no {kind} series {name!r} for {year}: not bundled (bundled: "
                      f"{', '.join(have) or 'none'}), not in the data folder "
                      f"({data_dir or 'none given: --shared-data'}), not a file")


def _bundled_source(kind: str) -> str:
    return {"carbon": "Electricity Maps, ODbL", "price": "ENTSO-E via green-dcc",
            "temperature": "MET Norway CC BY 4.0 / Open-Meteo CC BY 4.0"}[kind]
