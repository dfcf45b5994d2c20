"""One tenant's bad input never hurts another, and never makes a 5xx: a table of hand-made bad
requests against a real `kraft serve`, on SQLite and PostgreSQL; bad submits in the middle of
a burst of good ones from other tenants; the CLI on hostile names and bytes."""

import asyncio
import json
import os
import re
import socket
import time

import httpx
import pytest
from test_recovery import free_port, kraft, start_server, wait

GOOD = {"gpus": 1, "command": ["true"]}
SERVICE = {"name": "chat", "model": "llama-3.1-8b", "gpu": "H100-SXM", "tp": 1,
           "slo": {"ttft_ms": 2000, "tpot_ms": 100}, "replicas": {"min": 0, "max": 1},
           "command": ["sleep", "60"]}


def raw(text: str) -> dict:
    """A JSON body as bytes, for what json.dumps would not write (NaN, lone surrogates)."""
    return {"content": text.encode("utf-8", "surrogatepass"),
            "headers": {"content-type": "application/json"}}


# (what, method, path, request options, the statuses allowed)
BAD = [
    ("NUL in a name", "POST", "/v1/jobs", {"json": {**GOOD, "name": "a\x00b"}}, {422}),
    ("NUL in an env value", "POST", "/v1/jobs", {"json": {**GOOD, "env": {"A": "\x00"}}},
     {422}),
    ("lone surrogate", "POST", "/v1/jobs", raw('{"gpus": 1, "command": ["\\ud800"]}'), {422}),
    ("1e999", "POST", "/v1/jobs", raw('{"gpus": 1, "command": ["true"], '
                                      '"checkpoint_interval_s": 1e999}'), {422}),
    ("NaN", "POST", "/v1/jobs", raw('{"gpus": 1, "command": ["true"], '
                                    '"restart_cost_s": NaN}'), {422}),
    ("Infinity", "POST", "/v1/jobs", raw('{"gpus": 1, "command": ["true"], '
                                         '"time_limit_s": Infinity}'), {422}),
    ("huge integer", "POST", "/v1/jobs", raw('{"gpus": 1' + "0" * 30 + ', "command": ["x"]}'),
     {422}),
    ("nested 10,000 deep", "POST", "/v1/jobs", raw('{"gpus": 1, "command": ' + "[" * 10000
                                                   + "]" * 10000 + "}"), {422}),
    ("id above 2^31-1", "GET", "/v1/jobs/2147483648", {}, {422}),
    ("id 2^62", "GET", "/v1/jobs/4611686018427387904/events", {}, {422}),
    ("state=%00", "GET", "/v1/jobs?state=%00", {}, {422}),
    ("unknown state", "GET", "/v1/jobs?state=lost", {}, {422}),
    ("logs offset 2^62", "GET", "/v1/jobs/1/logs?offset=4611686018427387904", {}, {200, 404}),
    ("tenant name of 101 characters", "POST", "/admin/tenants", {"json": {"name": "t" * 101}},
     {422}),
    ("tenant name with a slash", "POST", "/admin/tenants", {"json": {"name": "../x"}}, {422}),
    ("a tiny kv_bytes_per_token", "POST", "/v1/services", {"json": {**SERVICE, "model": {
        "name": "m", "params_b": 1, "layers": 1, "hidden": 64, "kv_bytes_per_token": 1e-300}}},
     {422}),
    ("service name of 200 characters", "POST", "/v1/services",
     {"json": {**SERVICE, "name": "s" * 200}}, {422}),
    ("Bearer and two spaces", "GET", "/v1/jobs", {"auth": "Bearer  {token}"}, {401}),
    ("no Bearer", "GET", "/v1/jobs", {"auth": "{token}"}, {401}),
]


@pytest.fixture
def server(db_url, tmp_path):
    home = tmp_path / "home"
    db = None if db_url.startswith("sqlite") else db_url
    db_args = ["--db", db] if db else []
    tokens = {}
    for name in ("a", "b"):
        out = kraft("admin", "tenant", "create", name, "--data-dir", str(home), *db_args).stdout
        tokens[name] = re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)
    port = free_port()
    proc = start_server(home, port, db, extra=("--single-user",))
    out = proc.stdout.read1().decode() if proc.stdout else ""
    operator = re.search(r"ko_[A-Za-z0-9_-]+", out)
    yield f"http://127.0.0.1:{port}", tokens, operator.group(0) if operator else None, home
    proc.terminate()
    proc.wait(timeout=15)


def test_bad_requests_get_a_4xx_with_a_reason(server):
    url, tokens, operator, _ = server
    with httpx.Client(base_url=url, timeout=60) as c:
        for what, method, path, opts, allowed in BAD:
            opts = dict(opts)
            token = operator if path.startswith("/admin") else tokens["a"]
            auth = opts.pop("auth", "Bearer {token}").format(token=token)
            headers = {"Authorization": auth, **opts.pop("headers", {})}
            r = c.request(method, path, headers=headers, **opts)
            assert r.status_code in allowed, (what, r.status_code, r.text[:300])
            assert len(r.content) < 10_000, (what, "the answer echoed the input back")
            if r.status_code >= 400:
                assert r.json()["detail"], (what, "no reason given")
        # a service name at the limit: every name Kraft derives from it fits too
        name = "s" * 100
        assert c.post("/v1/services", json={**SERVICE, "name": name, "replicas": {
            "min": 1, "max": 1}}, headers={"Authorization": f"Bearer {tokens['a']}"}
                      ).status_code == 201
        deadline = time.time() + 15  # the loop (its own process on PostgreSQL) makes it
        while True:
            jobs = c.get("/v1/jobs", headers={"Authorization": f"Bearer {tokens['a']}"}).json()
            if any(j["name"] == f"{name}-replica" for j in jobs) or time.time() > deadline:
                break
            time.sleep(0.1)
        assert any(j["name"] == f"{name}-replica" for j in jobs), jobs
        r = c.delete(f"/v1/services/{name}", headers={"Authorization": f"Bearer {tokens['a']}"})
        assert r.status_code == 204, r.text


def test_reusing_an_idempotency_key_with_another_body_is_refused(server):
    url, tokens, _, _ = server
    h = {"Authorization": f"Bearer {tokens['a']}", "Idempotency-Key": "k1"}
    with httpx.Client(base_url=url, timeout=30) as c:
        first = c.post("/v1/jobs", json=GOOD, headers=h)
        same = c.post("/v1/jobs", json=GOOD, headers=h)
        other = c.post("/v1/jobs", json={**GOOD, "gpus": 2}, headers=h)
    assert first.status_code == 201 and same.status_code == 200
    assert same.json()["id"] == first.json()["id"]
    assert other.status_code == 409 and "another body" in other.json()["detail"]


def test_a_body_that_never_arrives_holds_no_connection(server):
    url, tokens, _, _ = server
    port = int(url.rsplit(":", 1)[1])
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['a']}"
                  f"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                  .encode())
        answer = s.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert time.time() - t0 < 20


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_unread(server, framing):
    """A 50 MB body: refused (413) after at most the limit is read, said or not said up front
    (raw socket: the server answers while the client could still be sending)."""
    url, tokens, _, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['a']}\r\n"
            f"Content-Type: application/json\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        if framing == "content-length":
            s.sendall(f"{head}Content-Length: {50 << 20}\r\n\r\n".encode() + b" " * 4096)
        else:
            s.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            chunk = b" " * (1 << 20)
            try:
                for _ in range(50):
                    s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:  # the server answered and closed: what we want
                pass
        answer = s.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_bad_submits_amid_a_burst_are_refused_alone(server):
    """600 good submits from two tenants with 30 bad ones among them, all at once: every good
    one is accepted (the group commit writes them together), every bad one is a 422."""
    url, tokens, _, _ = server
    bad_bodies = ['{"gpus": 1, "command": ["a\\u0000"]}', '{"gpus": 1, "command": ["\\ud800"]}',
                  '{"gpus": 1, "command": ["x"], "restart_cost_s": 1e999}']

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     limits=httpx.Limits(max_connections=64)) as c:
            # 64 in flight at a time, as many as the connections: beyond that httpx's pool
            # spends the client's CPU matching queued requests to connections, not sending
            in_flight = asyncio.Semaphore(64)

            async def good(i):
                who = tokens["a" if i % 2 else "b"]
                async with in_flight:
                    r = await c.post("/v1/jobs", json={**GOOD, "name": f"g{i}"}, headers={
                        "Authorization": f"Bearer {who}", "Idempotency-Key": f"g{i}"})
                return ("good", r.status_code)

            async def bad(i):
                async with in_flight:
                    r = await c.post("/v1/jobs", content=bad_bodies[i % 3].encode(
                        "utf-8", "surrogatepass"), headers={
                            "Authorization": f"Bearer {tokens['a']}",
                            "content-type": "application/json"})
                return ("bad", r.status_code)
            tasks = [good(i) for i in range(600)] + [bad(i) for i in range(30)]
            order = sorted(range(len(tasks)), key=lambda i: (i * 7919) % len(tasks))
            return await asyncio.gather(*(tasks[i] for i in order))
    results = asyncio.run(burst())
    good = [s for k, s in results if k == "good"]
    bad = [s for k, s in results if k == "bad"]
    assert good.count(201) == 600, sorted(set(good))
    assert bad.count(422) == 30, sorted(set(bad))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the CLI's side only
def test_cli_on_hostile_names_and_bytes(server):
    url, tokens, _, home = server
    env = {**os.environ, "KRAFT_SERVER": url, "KRAFT_TOKEN": tokens["a"]}
    h = {"Authorization": f"Bearer {tokens['a']}"}
    script = ("printf 'before\\n\\xff\\xfe\\x80 not utf-8\\n'; sleep 1.5; printf 'after\\n'; "
              "sleep 0.5; printf 'end\\n'")
    job_id = httpx.post(f"{url}/v1/jobs", headers=h, json={
        "name": "[/]x[bold red]", "gpus": 1, "command": ["bash", "-c", script]}).json()["id"]
    wait(httpx.Client(base_url=url, headers=h), job_id, {"running", "succeeded"})
    follow = kraft("logs", str(job_id), "-f", env=env, check=False)
    assert follow.returncode == 0, follow.stderr
    assert "before" in follow.stdout and "after" in follow.stdout and "end" in follow.stdout
    for args in (["jobs"], ["job", str(job_id)]):
        out = kraft(*args, env=env, check=False)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
    assert "[/]x[bold red]" in kraft("jobs", env=env).stdout
    audit = kraft("admin", "audit", "--data-dir", str(home), check=False)
    assert audit.returncode == 0 and "Traceback" not in audit.stderr, audit.stderr



@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the CLI's side only
def test_kraft_jobs_and_kraft_queue_as_a_tenant_reads_them(server):
    url, tokens, _, _ = server
    env = {**os.environ, "KRAFT_SERVER": url, "KRAFT_TOKEN": tokens["a"], "COLUMNS": "200"}
    h = {"Authorization": f"Bearer {tokens['a']}"}
    c = httpx.Client(base_url=url, headers=h)
    done = c.post("/v1/jobs", json={"name": "quick", "gpus": 1, "command": ["true"]}).json()
    wait(c, done["id"], {"succeeded"})
    hog = c.post("/v1/jobs", json={"name": "hog", "gpus": 8, "command": ["sleep", "60"],
                                   "time_limit_s": 600}).json()["id"]
    wait(c, hog, {"running"})
    behind = c.post("/v1/jobs", json={"name": "behind", "gpus": 8,
                                      "command": ["true"]}).json()["id"]
    rows = json.loads(kraft("jobs", "-o", "json", env=env).stdout)
    assert [r["id"] for r in rows] == [behind, hog, done["id"]]  # newest first
    table = kraft("jobs", env=env).stdout
    assert "hog" in table and "local" in table and "0:00:" in table and "UTC" in table
    running = json.loads(kraft("jobs", "--state", "running", "-o", "json", env=env).stdout)
    assert [r["id"] for r in running] == [hog]
    future = "2999-01-01T00:00"
    live = json.loads(kraft("jobs", "--since", future, "-o", "json", env=env).stdout)
    assert {r["id"] for r in live} == {hog, behind}  # the ended one is older than --since
    deadline = time.time() + 10
    while time.time() < deadline:
        q = json.loads(kraft("queue", "-o", "json", env=env).stdout)
        if [j["id"] for j in q["jobs"]] == [behind]:
            break
        time.sleep(0.2)
    assert [j["id"] for j in q["jobs"]] == [behind] and q["jobs"][0]["expected_start"]
    shown = kraft("queue", env=env).stdout
    assert "behind" in shown and "policy backfill" in shown and "expected start" in shown
    bad = kraft("jobs", "-o", "yaml", env=env, check=False)
    assert bad.returncode == 2 and "table, wide or json" in bad.stderr + bad.stdout
    c.post(f"/v1/jobs/{hog}/cancel")

def test_json_guard_names_the_place():
    from kraft.control.guard import BadBody, check_json

    with pytest.raises(BadBody) as e:
        check_json(json.dumps({"env": {"A": "x\x00"}}).encode())
    assert e.value.loc == ["env", "A"] and "NUL" in e.value.msg
    assert check_json(b'{"a": [1, 2.5, "ok"]}') == {"a": [1, 2.5, "ok"]}
