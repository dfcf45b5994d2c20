"""The baseline for bench/control.py: the same POST, answered by FastAPI without any work
(no validation, no database), served the same way (one uvicorn process)."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/v1/jobs", status_code=201)
async def submit() -> dict:
    return {"id": 1}
