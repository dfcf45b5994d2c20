"""Usage routes: `GET /v1/usage` (a tenant's own), `GET /admin/usage` (every tenant, and the
sites' own books), `GET /v1/jobs/{id}/attempts` (each attempt with its books), and the
reports from the books (docs/reporting.md): `GET /v1/reports/tenant` and `/v1/reports/ai-act`
(a tenant's own), `GET /admin/reports/tenant` (every tenant's)."""


import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import HTTPException, Query

from kraft.control.params import Id, NameQuery
from kraft.control.usage import LiveBooks, parse_time

By = Literal["tenant", "site", "day", "job"]
When = Annotated[str | None, Query(max_length=40, description="ISO date or time, UTC")]
Year = Annotated[int | None, Query(ge=1970, le=2200, description="the year (default: this)")]
RunPattern = Annotated[str, Query(min_length=1, max_length=200,
                                  description="a job name, or a pattern: pretrain-7b-*")]


def month_start(now: float) -> float:
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def period(since: str | None, until: str | None) -> tuple[float, float]:
    """[since, until) in epoch seconds; default: this month so far. A bad time is a 422."""
    now = time.time()
    try:
        return parse_time(since, month_start(now)), parse_time(until, now)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


def add_usage_routes(app, Session, Tenant, Operator, own, live: LiveBooks | None) -> None:
    def books() -> LiveBooks:
        if live is None:
            raise HTTPException(503, "this API process has no fleet: it keeps no books")
        try:
            _ = live.inputs  # loaded here, so a missing series is said at once
        except ValueError as e:  # a site whose series are missing: say which
            raise HTTPException(503, f"no books: {e}") from None
        return live

    def figures(lb, s, since, until, by, tenant, with_sites):
        a, b = period(since, until)
        try:
            return lb.usage(s, a, b, by, tenant, with_sites)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/v1/usage")
    def usage(who: Tenant, since: When = None, until: When = None,
              by: By = "tenant") -> dict:
        """Your usage over [since, until) (ISO times, UTC; default this month): GPU-hours,
        IT and facility kWh, kgCO2e location- and market-based (apart), energy cost and
        GPU-hour charge, summed by tenant, site, day or job."""
        lb = books()
        with Session() as s:
            return figures(lb, s, since, until, by, who, False)

    @app.get("/admin/usage")
    def admin_usage(who: Operator, since: When = None, until: When = None,
                    by: By = "tenant", tenant: NameQuery = None) -> dict:
        """Every tenant's usage (or one's), with each site's own books (idle GPUs, PUE)."""
        lb = books()
        with Session() as s:
            return figures(lb, s, since, until, by, tenant, True)

    @app.get("/v1/jobs/{job_id}/attempts")
    def attempts(job_id: Id, who: Tenant) -> list[dict]:
        """Each attempt of one of your jobs: where and when it ran, how it ended, its books."""
        lb = books()
        with Session() as s:
            own(s, job_id, who)
            return lb.attempts(s, job_id)

    def report_source(s, lb, year, tenant=None):
        from kraft.reporting.sources import from_live

        try:
            return from_live(s, lb, year, time.time(), tenant)
        except ValueError as e:  # nothing ran in the period
            raise HTTPException(404, str(e)) from None

    def this_year() -> int:
        return datetime.now(UTC).year

    @app.get("/v1/reports/tenant")
    def tenant_report(who: Tenant, period: Year = None) -> dict:
        """Your energy and scope-2 kgCO2e (location- and market-based, apart) per month and
        site, and your hourly carbon-free energy score, for a year (default: this one)."""
        from kraft.reporting import make

        lb = books()
        with Session() as s:  # every tenant's attempts: a site's hourly match needs them
            return make.tenant(report_source(s, lb, period or this_year()), who)

    @app.get("/admin/reports/tenant")
    def admin_tenant_report(who: Operator, period: Year = None,
                            tenant: NameQuery = None) -> dict:
        """Every tenant's figures (or one's) for a year."""
        from kraft.reporting import make

        lb = books()
        with Session() as s:
            return make.tenant(report_source(s, lb, period or this_year()), tenant)

    @app.get("/v1/reports/ai-act")
    def ai_act_report(who: Tenant, run: RunPattern) -> dict:
        """The AI Act documentation of one of your training runs: training compute (FLOP)
        and its method, training time, energy, and the compute lines it crosses."""
        from kraft.reporting import make

        lb = books()
        with Session() as s:
            src = report_source(s, lb, None, who)
            try:
                return make.ai_act(src, who, run)
            except ValueError as e:
                raise HTTPException(404, str(e)) from None
