"""The operator's live dashboard: `GET /dashboard` (a page) and `GET /admin/dashboard` (its
data, operator token). The page takes the token from its URL fragment
(`/dashboard#token=ko_...`), which browsers never send to the server, and refreshes itself
every 2 s: occupancy by site and pod, power and carbon now, every node's state (up, drained,
draining, down, maintenance) with its jobs, the queue with each job's reason and the time it
has waited since it last (re)entered the queue, running jobs, inference services with their
replicas, and per-tenant usage against reservations and quotas. plotly.js is served by
Kraft itself (`/dashboard/plotly.js`), so the page works without the internet.
"""


import time
from functools import cache

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from kraft.cluster.state import ClusterState
from kraft.control.nodes import view
from kraft.control.store import FINAL, AttemptRow, JobRow, ServiceRow, TenantRow, as_utc

WAITING_SHOWN = 200  # the queue's first jobs; the count is always whole
NODES_SHOWN = 200  # nodes not up first; the cards and the pod plot count every node


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def add_dashboard(app: FastAPI, Session, Operator, collector,
                  cluster: ClusterState | None = None) -> None:
    """`cluster`: the served fleet's, shared with the node routes (one copy per process)."""

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/dashboard/plotly.js", include_in_schema=False)
    def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/admin/dashboard")
    def data(who: Operator) -> dict:
        """The dashboard's data: fleet now, queue, running jobs, tenants."""
        now = time.time()
        snap = collector.snapshot() if collector is not None else {"sites": [], "states": {}}
        with Session() as s:
            waiting = s.scalars(select(JobRow).where(JobRow.state.in_(("pending", "admitted")))
                                .order_by(JobRow.id).limit(WAITING_SHOWN)).all()
            running = s.scalars(select(JobRow).where(JobRow.state == "running")
                                .order_by(JobRow.id)).all()
            tenants = s.scalars(select(TenantRow).order_by(TenantRow.name)).all()
            # a requeued job waits since its last attempt ended, not since it was submitted
            requeued = dict(s.execute(
                select(AttemptRow.job_id, func.max(AttemptRow.end_s))
                .where(AttemptRow.job_id.in_([j.id for j in waiting if j.attempt]))
                .group_by(AttemptRow.job_id)).all()) if any(j.attempt for j in waiting) else {}
            nodes = view(s, cluster)["nodes"] if cluster is not None else []
            # at fleet scale, the nodes that are not up first, then as many as a page holds
            nodes = sorted(nodes, key=lambda n: n["state"] == "up")[:NODES_SHOWN]
            services = _services(s)
        use: dict[str, dict] = {t.name: {"tenant": t.name, "tier": t.spec.get("tier"),
                                         "reserved_gpus": t.spec.get("reserved_gpus", 0),
                                         "quota_gpus": t.spec.get("quota_gpus"),
                                         "running_gpus": 0, "waiting_jobs": 0}
                                for t in tenants}
        for j in running:
            use[j.tenant]["running_gpus"] += j.spec["gpus"]
        states = snap["states"]
        for j in waiting:
            use[j.tenant]["waiting_jobs"] += 1
        return {
            "at": now, "sites": snap["sites"],
            "waiting_total": states.get("pending", 0) + states.get("admitted", 0),
            "queue": [{"id": j.id, "tenant": j.tenant, "name": j.name, "gpus": j.spec["gpus"],
                       "waiting_s": round(now - (requeued.get(j.id) or j.submitted_s), 1),
                       "attempts": j.attempt, "reason": j.reason}
                      for j in waiting],
            "running": [{"id": j.id, "tenant": j.tenant, "name": j.name, "gpus": j.spec["gpus"],
                         "nodes": [r["node"] for r in j.placement or []],
                         "running_s": round(now - as_utc(j.started_at).timestamp(), 1)
                         if j.started_at else None} for j in running],
            "tenants": list(use.values()),
            "nodes": [{**n, "jobs": ", ".join(map(str, n["jobs"]))} for n in nodes],
            "services": services,
        }


def _services(s) -> list[dict]:
    """Inference services: replicas desired, running and starting."""
    rows = s.scalars(select(ServiceRow).where(ServiceRow.deleted.is_(False))
                     .order_by(ServiceRow.tenant, ServiceRow.name)).all()
    replicas: dict[int, list[str]] = {}
    for service_id, state in s.execute(select(JobRow.service_id, JobRow.state).where(
            JobRow.service_id.in_([r.id for r in rows]), JobRow.state.not_in(FINAL))):
        replicas.setdefault(service_id, []).append(state)
    return [{"service": r.name, "tenant": r.tenant, "model": r.spec.get("model"),
             "desired": r.desired_replicas,
             "running": replicas.get(r.id, []).count("running"),
             "starting": sum(x != "running" for x in replicas.get(r.id, []))} for r in rows]


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Kraft dashboard</title><link rel="icon" href="data:,">
<script src="/dashboard/plotly.js"></script>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:.6em 1em;min-width:12em}.card b{font-size:1.4em;display:block}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:3px 8px;text-align:left}th{background:#f4f4f4}#error{color:#b00}
</style></head><body>
<h1>Kraft</h1><p id="status">loading...</p><p id="error"></p>
<div class="cards" id="cards"></div>
<div id="occupancy" style="height:360px"></div>
<h2>Nodes</h2><table id="nodes"></table>
<h2>Queue (<span id="waiting">0</span> waiting)</h2><table id="queue"></table>
<h2>Running</h2><table id="running"></table>
<h2>Inference services</h2><table id="services"></table>
<h2>Tenants</h2><table id="tenants"></table>
<script>
const token = new URLSearchParams(location.hash.slice(1)).get("token");
function esc(x) { return String(x ?? "-").replace(/[&<>"']/g,
  c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c])); }
function table(id, cols, rows) {
  const head = "<tr>" + cols.map(c => "<th>" + esc(c[0]) + "</th>").join("") + "</tr>";
  const body = rows.map(r => "<tr>" + cols.map(c => "<td>" + esc(r[c[1]]) + "</td>")
                                      .join("") + "</tr>").join("");
  document.getElementById(id).innerHTML = head + body;
}
async function refresh() {
  if (!token) { document.getElementById("error").textContent =
      "open this page as /dashboard#token=<operator token>"; return; }
  const r = await fetch("/admin/dashboard", {headers: {Authorization: "Bearer " + token}});
  if (!r.ok) { document.getElementById("error").textContent =
      "the server said " + r.status + ": " + (await r.text()); return; }
  const d = await r.json();
  document.getElementById("error").textContent = "";
  document.getElementById("status").textContent =
      "updated " + new Date(d.at * 1000).toLocaleTimeString() + "; refreshes every 2 s";
  document.getElementById("cards").innerHTML = d.sites.map(s =>
    '<div class="card">' + esc(s.site) + " (" + esc(s.zone) + ")<b>" + s.allocated + " / " +
    s.gpus + " GPUs</b>IT " + (s.it_w / 1e3).toFixed(1) + " kW of " +
    (s.budget_w / 1e6).toFixed(1) + " MW; facility " + (s.facility_w / 1e3).toFixed(1) +
    " kW<br>grid " + (s.carbon_g_per_kwh == null ? "n/a" : s.carbon_g_per_kwh.toFixed(0)) +
    " gCO2e/kWh (location)</div>").join("");
  const pods = d.sites.flatMap(s => s.pods);
  Plotly.react("occupancy", [
    {type: "bar", name: "allocated", x: pods.map(p => p.pod), y: pods.map(p => p.allocated)},
    {type: "bar", name: "free", x: pods.map(p => p.pod),
     y: pods.map(p => p.gpus - p.allocated)}],
    {barmode: "stack", title: "GPU occupancy by pod", yaxis: {title: "GPUs"},
     margin: {t: 40}});
  document.getElementById("waiting").textContent = d.waiting_total;
  table("nodes", [["node", "node"], ["site", "site"], ["pod", "pod"], ["model", "model"],
                  ["GPUs", "gpus"], ["allocated", "allocated"], ["state", "state"],
                  ["reason", "reason"], ["jobs", "jobs"]], d.nodes);
  table("queue", [["job", "id"], ["tenant", "tenant"], ["name", "name"], ["GPUs", "gpus"],
                  ["waiting s (since last queued)", "waiting_s"], ["attempts", "attempts"],
                  ["reason", "reason"]], d.queue);
  table("running", [["job", "id"], ["tenant", "tenant"], ["name", "name"], ["GPUs", "gpus"],
                    ["nodes", "nodes"], ["running s", "running_s"]], d.running);
  table("services", [["service", "service"], ["tenant", "tenant"], ["model", "model"],
                     ["replicas desired", "desired"], ["running", "running"],
                     ["starting", "starting"]], d.services);
  table("tenants", [["tenant", "tenant"], ["tier", "tier"], ["running GPUs", "running_gpus"],
                    ["reserved GPUs", "reserved_gpus"], ["quota GPUs", "quota_gpus"],
                    ["waiting jobs", "waiting_jobs"]], d.tenants);
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
