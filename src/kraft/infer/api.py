"""HTTP routes of inference services: tenants manage their services under /v1/services and
call them through the OpenAI-compatible /v1/completions and /v1/chat/completions, where
"model" names the service. Tenant auth and isolation as for jobs: another tenant's service is
a 404 unless it is shared. (No `from __future__ import annotations` here: FastAPI resolves the
routes' annotations at definition time.)"""


import time
from typing import Annotated

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from kraft.control.store import JobRow, ServiceRow, sessions, write_lock
from kraft.infer.live import FINAL, Gateway, RoutingError
from kraft.spec.inference import InferenceServiceSpec
from kraft.spec.load import explain

Name = Annotated[str, PathParam(min_length=1, max_length=200)]
CHARS_PER_TOKEN = 4  # rough English average, only to size a prompt for routing


class ServiceOut(BaseModel):
    name: str
    tenant: str
    desired_replicas: int
    replicas: list[dict]
    spec: dict


class Completion(BaseModel):
    """The fields Kraft reads; everything else passes through to the replica as is."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200, description="the service's name")
    stream: bool = False
    prompt: str | list[str] | None = Field(None, max_length=1_000_000)
    messages: list[dict] | None = Field(None, max_length=10_000)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)


def add_inference_routes(app: FastAPI, engine, Tenant, audit, gateway: Gateway | None) -> None:
    Session = sessions(engine)

    def out(s, row: ServiceRow) -> ServiceOut:
        jobs = s.scalars(select(JobRow).where(JobRow.service_id == row.id,
                                              JobRow.state.not_in(FINAL))).all()
        live = gateway.services.get(row.id) if gateway else None
        reps = []
        for j in jobs:
            rep = live.replicas.get(j.id) if live else None
            reps.append({"job_id": j.id, "state": j.state, "draining": j.draining,
                         "site": rep.site if rep else None, "ready": bool(rep and rep.ready),
                         "in_flight": rep.outstanding if rep else 0})
        return ServiceOut(name=row.name, tenant=row.tenant, replicas=reps, spec=row.spec,
                          desired_replicas=row.desired_replicas)

    def own(s, name: str, who: str) -> ServiceRow:
        row = s.scalar(select(ServiceRow).where(ServiceRow.tenant == who,
                                                ServiceRow.name == name,
                                                ServiceRow.deleted.is_(False)))
        if row is None:
            raise HTTPException(404, f"no service {name!r}")
        return row

    @app.post("/v1/services", status_code=201, response_model=ServiceOut)
    def create_service(body: dict, request: Request, who: Tenant) -> ServiceOut:
        """Create an InferenceService (fields as in a service YAML; the tenant is the
        token's). Its replicas start as jobs of `tp` GPUs running `command`."""
        try:
            spec = InferenceServiceSpec.model_validate({**body, "tenant": who})
        except ValidationError as e:
            raise HTTPException(422, [  # located in the body, as FastAPI's own 422s are
                {"loc": ["body", *x["loc"]], "msg": explain(x, InferenceServiceSpec),
                 "type": x["type"]} for x in e.errors(include_url=False)]) from None
        if not spec.command:
            raise HTTPException(422, "command: a live service needs the command that starts "
                                     "a replica (it gets its port in PORT)")
        with write_lock(engine), Session() as s:
            if s.scalar(select(ServiceRow.id).where(ServiceRow.tenant == who,
                                                    ServiceRow.name == spec.name)):
                raise HTTPException(409, f"service {spec.name!r} exists")
            row = ServiceRow(tenant=who, name=spec.name, spec=spec.model_dump(mode="json"),
                             desired_replicas=spec.replicas.start, deleted=False)
            s.add(row)
            audit(s, who, "service.create", spec.name, request)
            s.commit()
            return out(s, row)

    @app.get("/v1/services", response_model=list[ServiceOut])
    def list_services(who: Tenant) -> list[ServiceOut]:
        with Session() as s:
            rows = s.scalars(select(ServiceRow).where(ServiceRow.tenant == who,
                                                      ServiceRow.deleted.is_(False)))
            return [out(s, r) for r in rows]

    @app.get("/v1/services/{name}", response_model=ServiceOut)
    def get_service(name: Name, who: Tenant) -> ServiceOut:
        with Session() as s:
            return out(s, own(s, name, who))

    @app.delete("/v1/services/{name}", status_code=204)
    def delete_service(name: Name, request: Request, who: Tenant) -> None:
        """Stop taking requests; replicas drain, then stop."""
        with write_lock(engine), Session() as s:
            row = own(s, name, who)
            row.deleted, row.desired_replicas = True, 0
            row.name = f"{row.name}~deleted-{row.id}"  # the name is free again
            audit(s, who, "service.delete", name, request)
            s.commit()

    async def forward(body: Completion, who: str, path: str) -> Response:
        if gateway is None:
            raise HTTPException(503, "this server runs no inference gateway")
        try:
            svc = await gateway.find_fresh(who, body.model)
            text = body.prompt if isinstance(body.prompt, str) else str(body.messages or "")
            rep = await gateway.pick(svc, who, max(1, len(text) // CHARS_PER_TOKEN))
        except RoutingError as e:
            raise HTTPException(e.status, e.reason) from None
        rep.mine += 1
        t0 = time.perf_counter()
        try:
            resp = await gateway.client.send(gateway.client.build_request(
                "POST", rep.url + path, json=body.model_dump(exclude_none=True)), stream=True)
        except httpx.HTTPError as e:
            rep.mine -= 1
            raise HTTPException(502, f"replica {rep.job_id} did not answer: {e}") from None
        headers = {"x-kraft-replica": str(rep.job_id), "x-kraft-site": rep.site}
        if not body.stream:
            try:
                data = await resp.aread()
            finally:
                await resp.aclose()
                rep.mine -= 1
            gateway.record(svc, (time.perf_counter() - t0) * 1e3, None)
            return Response(data, resp.status_code, headers,
                            resp.headers.get("content-type", "application/json"))

        async def relay():
            first, chunks = None, 0
            try:
                async for chunk in resp.aiter_raw():
                    first = first or time.perf_counter()
                    chunks += chunk.count(b"data: ")
                    yield chunk
            finally:
                await resp.aclose()
                rep.mine -= 1
                if first is not None:
                    end = time.perf_counter()
                    tpot = (end - first) * 1e3 / (chunks - 2) if chunks > 2 else None
                    gateway.record(svc, (first - t0) * 1e3, tpot)
        return StreamingResponse(relay(), resp.status_code, headers,
                                 resp.headers.get("content-type", "text/event-stream"))

    @app.post("/v1/completions", responses={404: {}, 451: {}, 503: {}})
    async def completions(body: Completion, who: Tenant) -> Response:
        """OpenAI-compatible completions; `model` is the service's name."""
        return await forward(body, who, "/v1/completions")

    @app.post("/v1/chat/completions", responses={404: {}, 451: {}, 503: {}})
    async def chat_completions(body: Completion, who: Tenant) -> Response:
        """OpenAI-compatible chat completions; `model` is the service's name."""
        return await forward(body, who, "/v1/chat/completions")
