"""Operator routes for nodes: `GET /admin/nodes[?site=]`, `POST /admin/nodes/{action}` with
`{"target": NODE|POD|SITE, "reason": "...", "now": false}`, a drain with `"from"` and
`"until"` (ISO times) being a maintenance window (kraft.control.nodes)."""

from typing import Annotated, Literal

from fastapi import HTTPException, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kraft.cluster.state import ClusterState
from kraft.control import nodes
from kraft.control.store import write_lock


class NodeChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=300, description="site/pod-nNNN, site/pod or site")
    reason: str = Field("", max_length=1000)
    now: bool = Field(False, description="drain: preempt the jobs on it (checkpoint kept)")
    start: AwareDatetime | None = Field(None, alias="from", description="maintenance from")
    until: AwareDatetime | None = Field(None, description="maintenance until")

    def window(self) -> tuple[float, float] | None:
        if self.start is None and self.until is None:
            return None
        if self.start is None or self.until is None:
            raise ValueError("a maintenance window needs both from and until")
        return self.start.timestamp(), self.until.timestamp()


def add_node_routes(app, engine, Session, Operator, cluster: ClusterState | None) -> None:
    def fleet() -> ClusterState:
        if cluster is None:
            raise HTTPException(503, "this API process has no fleet")
        return cluster

    @app.get("/admin/nodes")
    def list_nodes(who: Operator,
                   site: Annotated[str | None, Query(max_length=100)] = None) -> dict:
        """Every node: site, pod, GPU model, GPUs total and allocated, state (up, draining,
        drained, down), reason, since, the jobs on it; summed per pod and site."""
        c = fleet()
        with Session() as s:
            try:
                return nodes.view(s, c, site)
            except ValueError as e:
                raise HTTPException(404, str(e)) from None

    @app.post("/admin/nodes/{action}")
    def change_nodes(action: Literal["drain", "resume", "down"], body: NodeChange,
                     request: Request, who: Operator) -> dict:
        """Drain (no new work; `now`: preempt what runs there), resume, or mark down (its
        jobs requeue as failures). The loop applies it within a step; audited with the
        reason."""
        c = fleet()
        with write_lock(engine), Session() as s:
            try:
                names = nodes.change(s, c, action, body.target, body.reason, body.now, who,
                                     request.client.host if request.client else "",
                                     body.window())
            except ValueError as e:
                raise HTTPException(404 if str(e).startswith("no node") else 422,
                                    str(e)) from None
            s.commit()
        return {"action": action, "nodes": names}
