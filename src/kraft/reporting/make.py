"""Each report from a Source (kraft.reporting.sources): the one path the twin, the live
service, the CLI and the API take."""

from __future__ import annotations

from kraft.reporting.ai_act import ai_act_report
from kraft.reporting.eed import eed_report
from kraft.reporting.hours import site_hours
from kraft.reporting.nkom import nkom_record
from kraft.reporting.sitefile import SiteFile
from kraft.reporting.sources import Source
from kraft.reporting.tenant import tenant_report


def eed(src: Source, site_file: SiteFile) -> dict:
    section, _ = src.books()
    return eed_report(section["per_site"], src.cluster, site_file, src.year, src.hours,
                      src.said)


def tenant(src: Source, only: str | None = None) -> dict:
    """`src` must hold every tenant's attempts (a site's hourly match depends on all of
    them); `only` keeps one tenant's figures in the report."""
    hours = site_hours(src.record, src.cluster, src.inputs, src.period)
    return tenant_report(hours, src.origin, f"{src.year}: {src.said}", only)


def ai_act(src: Source, tenant_name: str, run: str) -> dict:
    _, cols = src.books()
    return ai_act_report(src.record, cols, src.origin, tenant_name, run, src.inputs.mfu)


def nkom(src_cluster, site_file: SiteFile) -> dict:
    return nkom_record(src_cluster, site_file)
