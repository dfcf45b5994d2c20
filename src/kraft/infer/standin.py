"""A stand-in model server for tests and demos: it speaks the OpenAI completions API
(`/v1/completions`, `/v1/chat/completions`, streaming or not) and `/health`, and answers with
made-up tokens at a configurable speed. It STANDS IN for a real engine such as vLLM: no
model, no GPU, nothing learned. Use a real engine's command in a service spec for real work.

    python -m kraft.infer.standin --port 8001 --prefill-ms 50 --tpot-ms 10

On SIGTERM it stops taking connections and finishes the requests in flight (uvicorn's
graceful shutdown), as a replica being drained should.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def make_app(prefill_ms: float, tpot_ms: float, name: str) -> FastAPI:
    app = FastAPI(title="kraft stand-in model server")

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True, "pid": os.getpid()}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model"}]}

    async def complete(request: Request, chat: bool):
        body = await request.json()
        n = max(1, min(int(body.get("max_tokens") or 16), 4096))
        kind = "chat.completion" if chat else "text_completion"
        rid = f"standin-{time.time_ns()}"

        def chunk(i: int, last: bool) -> dict:
            text = f" tok{i}"
            choice = ({"index": 0, "delta": {"content": text}} if chat
                      else {"index": 0, "text": text})
            choice["finish_reason"] = "length" if last else None
            return {"id": rid, "object": f"{kind}.chunk" if chat else kind,
                    "model": body.get("model", name), "choices": [choice]}

        await asyncio.sleep(prefill_ms / 1e3)
        if body.get("stream"):
            async def events():
                for i in range(n):
                    if i:
                        await asyncio.sleep(tpot_ms / 1e3)
                    yield f"data: {json.dumps(chunk(i, i == n - 1))}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        await asyncio.sleep((n - 1) * tpot_ms / 1e3)
        text = "".join(f" tok{i}" for i in range(n))
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                  else {"index": 0, "text": text})
        return JSONResponse({"id": rid, "object": kind, "model": body.get("model", name),
                             "choices": [{**choice, "finish_reason": "length"}],
                             "usage": {"completion_tokens": n}, "served_by": os.getpid()})

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--prefill-ms", type=float, default=20.0)
    ap.add_argument("--tpot-ms", type=float, default=5.0)
    ap.add_argument("--model", default="standin")
    a = ap.parse_args()
    uvicorn.run(make_app(a.prefill_ms, a.tpot_ms, a.model), host=a.host, port=a.port,
                log_level="warning", timeout_graceful_shutdown=60)


if __name__ == "__main__":
    main()
