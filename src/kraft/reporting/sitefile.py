"""The operator's site file: what a report needs and Kraft cannot know (floor areas,
refrigerants, metered water, the organisation), per site of the fleet. Every field is
optional: a report marks what is missing instead of guessing it."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field

from kraft.spec.load import SpecError, load_yaml
from kraft.spec.models import FleetSpec, _Strict


class Refrigerant(_Strict):
    name: str = Field(min_length=1, description="e.g. R-1234ze")
    gwp: float = Field(ge=0, description="global warming potential, 100 years")
    charge_kg: float = Field(ge=0)


class Instruments(_Strict):
    """Renewable energy bought for the reporting year, MWh (EED Annex II): what was cancelled
    or delivered, as the supplier's statements say."""

    guarantees_of_origin_mwh: float = Field(0.0, ge=0)
    ppa_mwh: float = Field(0.0, ge=0)
    onsite_mwh: float = Field(0.0, ge=0)


class SiteFacts(_Strict):
    address: str | None = None
    municipality: str | None = None
    commissioned: date | None = Field(None, description="the date the site started operating")
    kind: Literal["enterprise", "colocation", "co-hosting"] | None = Field(
        None, description="the data-centre type of Delegated Regulation 2024/1364, Art. 2")
    total_floor_area_m2: float | None = Field(None, ge=0)
    computer_room_floor_area_m2: float | None = Field(None, ge=0)
    subscribed_power_mw: float | None = Field(None, ge=0,
                                              description="the grid connection's subscribed power")
    water_input_m3: float | None = Field(None, ge=0, description="metered; else modelled")
    potable_water_m3: float | None = Field(None, ge=0)
    waste_heat_reused_kwh: float | None = Field(None, ge=0, description="metered; else modelled")
    waste_heat_temperature_c: float | None = None
    renewable: Instruments | None = Field(None, description="else derived from the fleet's "
                                                            "contract (modelled)")
    refrigerants: list[Refrigerant] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list,
                                description="what the site offers, e.g. colocation, AI training")


class Organisation(_Strict):
    name: str = Field(min_length=1)
    organisation_number: str | None = Field(None, description="e.g. the Norwegian orgnr")
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None


class SiteFile(_Strict):
    operator: Organisation | None = None
    owner: Organisation | None = None
    sites: dict[str, SiteFacts] = Field(default_factory=dict)


def load_site_file(path: Path | None, fleet: FleetSpec) -> SiteFile:
    """The file, each site checked against the fleet; no file: an empty one (every
    operator-given field then reads as not given)."""
    if path is None:
        return SiteFile()
    spec = load_yaml(path, SiteFile)
    names = [s.name for s in fleet.sites]
    for name in spec.sites:
        if name not in names:
            raise SpecError(f"{path}: sites.{name}: no such site in fleet {fleet.name}; "
                            f"allowed: {', '.join(names)}")
    return spec
