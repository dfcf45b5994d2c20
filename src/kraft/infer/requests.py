"""LLM request traces: arrival time, prompt tokens, output tokens.

Read from Azure's LLM inference traces (CSV: TIMESTAMP, ContextTokens, GeneratedTokens) or
Mooncake's (JSONL: timestamp in ms, input_length, output_length). Named traces are looked up
in the shared data folder; `azure-conv-sample` (the first 10 minutes of the conversation
trace) is bundled so that everything runs without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

NAMED = {
    "azure-conv": "inference/azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
    "azure-code": "inference/azure-llm-2023/AzureLLMInferenceTrace_code.csv",
    "mooncake-conversation": "inference/mooncake/conversation_trace.jsonl",
    "mooncake-synthetic": "inference/mooncake/synthetic_trace.jsonl",
}
BUNDLED = {"azure-conv-sample": "azure-conv-sample.csv"}


class RequestTraceError(ValueError):
    """A request trace that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Requests:
    """Requests sorted by arrival; times in seconds from the first arrival."""

    name: str
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    def scaled(self, rate_scale: float) -> Requests:
        """The same requests arriving `rate_scale` times as fast."""
        return Requests(f"{self.name} x{rate_scale:g}", self.arrival_s / rate_scale,
                        self.prompt_tokens, self.output_tokens)

    def head(self, n: int) -> Requests:
        return Requests(self.name, self.arrival_s[:n], self.prompt_tokens[:n],
                        self.output_tokens[:n])


def _azure(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"TIMESTAMP": "string"}))
    t = pc.cast(table["TIMESTAMP"], pa.timestamp("ns"))  # ISO with 7 fractional digits
    arrival = t.cast(pa.int64()).to_numpy() / 1e9
    return arrival, table["ContextTokens"].to_numpy(), table["GeneratedTokens"].to_numpy()


def _mooncake(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in path.open() if line.strip()]
    return (np.array([r["timestamp"] / 1e3 for r in rows]),
            np.array([r["input_length"] for r in rows]),
            np.array([r["output_length"] for r in rows]))


def load_requests(name: str, data_dir: Path | None = None) -> Requests:
    """A bundled name, a named trace in the shared data folder, or a .csv / .jsonl file."""
    if name in BUNDLED:
        path = Path(str(files("kraft.data.inference").joinpath(BUNDLED[name])))
    elif name in NAMED:
        if data_dir is None or not (data_dir / NAMED[name]).exists():
            raise RequestTraceError(
                f"{name}: not in the data folder ({data_dir or 'none given: --shared-data'}); "
                f"bundled: {', '.join(BUNDLED)}")
        path = data_dir / NAMED[name]
    else:
        path = Path(name)
        if not path.exists():
            raise RequestTraceError(f"{name}: no such file; named traces: "
                                    f"{', '.join([*BUNDLED, *NAMED])}")
    try:
        arrival, prompt, output = (_mooncake if path.suffix == ".jsonl" else _azure)(path)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise RequestTraceError(f"{path}: not an Azure LLM CSV or Mooncake JSONL trace: "
                                f"{e}") from None
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order] - arrival[order][0] if len(arrival) else arrival
    # A request yields at least one token; a prompt has at least one.
    return Requests(name, arrival.astype(np.float64),
                    np.maximum(prompt[order], 1).astype(np.int64),
                    np.maximum(output[order], 1).astype(np.int64))
