"""What a request body must be before any route sees it: bounded in size and in time, and,
if JSON, free of what no database column or process argument can hold.

One tenant's bad input must never hurt another: a NUL character or a lone surrogate in a
string, or a number JSON cannot carry back (NaN, Infinity, 1e999), made PostgreSQL refuse a
whole group-commit batch of other tenants' submits, and made the 422 handler fail to echo it.
Such a body is a 422 here, alone, naming where in the body it is.
"""

from __future__ import annotations

import asyncio
import json
import math

MAX_BODY = 1 << 20  # bytes; a job, a service or a tenant is a few hundred
MAX_PROMPT_BODY = 8 << 20  # completions carry prompts (up to a million characters)
BODY_TIMEOUT_S = 10.0  # a body that does not arrive by then holds no connection


class BadBody(ValueError):
    def __init__(self, loc: list, msg: str):
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def _constant(name: str):
    raise BadBody([], f"{name} is not a number JSON can carry; give a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody([], f"{text[:40]} is out of range; give a finite number")
    return value


def check_json(body: bytes):
    """The parsed body, or BadBody naming the first bad place."""
    try:
        data = json.loads(body, parse_constant=_constant, parse_float=_float)
    except BadBody:
        raise
    except (ValueError, RecursionError) as e:
        raise BadBody([], f"not valid JSON: {str(e)[:200]}") from None
    _walk(data, [])
    return data


def _walk(value, loc: list) -> None:
    todo = [(value, loc)]
    while todo:
        v, where = todo.pop()
        if isinstance(v, str):
            _text(v, where)
        elif isinstance(v, dict):
            for k, x in v.items():
                _text(k, where)
                todo.append((x, [*where, k]))
        elif isinstance(v, list):
            todo.extend((x, [*where, i]) for i, x in enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63:
            raise BadBody(where, "integer out of range (|n| < 2^63)")


def _text(s: str, loc: list) -> None:
    if "\x00" in s:
        raise BadBody(loc, "NUL characters are not allowed in text")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody(loc, "text is not valid Unicode (a lone surrogate)") from None


class BodyGuard:
    """ASGI middleware: size limit (413), read timeout (408), clean JSON (422)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        limit = MAX_PROMPT_BODY if scope["path"].endswith("completions") else MAX_BODY
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _answer(send, 413, f"request body over {limit:,} bytes")
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT_S)
            except TimeoutError:
                return await _answer(send, 408, f"request body not received within "
                                                f"{BODY_TIMEOUT_S:g} s")
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size > limit:
                return await _answer(send, 413, f"request body over {limit:,} bytes")
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        ctype = dict(scope.get("headers") or []).get(b"content-type", b"")
        if body and b"json" in ctype:
            try:
                check_json(body)
            except BadBody as e:
                return await _answer(send, 422, [{"loc": ["body", *e.loc], "msg": e.msg,
                                                  "type": "value_error"}])
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _answer(send, status: int, detail) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    if status in (408, 413):  # the body was not read to its end: the connection cannot go on
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
