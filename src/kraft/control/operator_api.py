"""Operator routes for every tenant's jobs: `GET /admin/jobs[?tenant=&state=&site=&limit=]`,
`POST /admin/jobs/{id}/{cancel,hold,release,requeue,top}` with `{"reason": "..."}`."""

from typing import Annotated, Literal

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kraft.control import operator
from kraft.control.params import Id, NameQuery
from kraft.control.store import write_lock


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


def add_operator_routes(app, engine, Session, Operator, out, State) -> None:
    @app.get("/admin/jobs")
    def all_jobs(who: Operator, tenant: NameQuery = None, state: State | None = None,
                 site: NameQuery = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict]:
        """Every tenant's jobs, newest first (`site`: those running there)."""
        with Session() as s:
            return [out(r).model_dump() for r in operator.all_jobs(s, tenant, state, site,
                                                                   limit)]

    @app.post("/admin/jobs/{job_id}/{action}", status_code=202)
    def act(job_id: Id, action: Literal["cancel", "hold", "release", "requeue", "top"],
            body: Reason, request: Request, who: Operator) -> dict:
        """Cancel, hold (out of the queue), release (back in its place) or requeue (stop and
        queue again with its checkpoint) any tenant's job; the loop carries it out within a
        step. Audited with the reason; the tenant sees it in the job's events."""
        with write_lock(engine), Session() as s:
            try:
                said = operator.request(s, job_id, action, body.reason, who,
                                        request.client.host if request.client else "")
            except LookupError as e:
                raise HTTPException(404, str(e)) from None
            except operator.Conflict as e:
                raise HTTPException(409, str(e)) from None
            s.commit()
        return {"job": job_id, "action": action, "said": said}
