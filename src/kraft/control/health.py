"""Liveness and readiness, as load balancers and Kubernetes probe them: `/healthz` answers
while the process serves at all; `/readyz` is 200 only when this instance can take work (its
database answers, and on SQLite its own scheduling loop runs), else 503 with what is wrong.
No token: a probe holds none, and neither answer names a job, a tenant or a host."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import select, text

from kraft.control.store import LeaseRow


def add_health_routes(app: FastAPI, engine, Session,
                      loop_alive: Callable[[], bool] | None) -> None:
    """`loop_alive`: whether this process's own loop thread runs (SQLite); None where the loop
    runs in a process of its own (PostgreSQL: any instance's, under the lease)."""

    # not in the OpenAPI document: probes take no input and no token, as the dashboard page
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with Session() as s:
                s.execute(text("SELECT 1"))
                checks["database"] = "ok"
                if loop_alive is None and engine.dialect.name == "postgresql":
                    # informative: a standby serves without a leader
                    fresh = s.scalar(select(LeaseRow.until > text("clock_timestamp()")).where(
                        LeaseRow.name == "loop"))
                    checks["scheduling"] = ("a leader holds the lease" if fresh
                                            else "no leader now (a standby takes over)")
        except Exception as e:  # the database is away: not ready, and say so
            checks["database"] = f"unreachable: {type(e).__name__}"
        if loop_alive is not None:
            checks["scheduling"] = "loop running" if loop_alive() else "loop stopped"
        ready = checks["database"] == "ok" and checks.get("scheduling") != "loop stopped"
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)
