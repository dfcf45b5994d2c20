"""InferenceService: a model served by replicas, with latency SLOs, bounds and residency."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kraft.catalog import CATALOG
from kraft.spec.models import NodeGroupSpec, ResidencySpec, _Strict

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


class LlmModelSpec(_Strict):
    """What the latency model needs of a model. `kraft infer models` lists built-in ones."""

    name: str = Field(min_length=1)
    params_b: float = Field(gt=0, le=100_000, description="parameters, billions")
    dtype: Literal["bf16", "fp16", "fp8", "int8", "int4"] = "bf16"
    layers: int = Field(ge=1, le=1000)
    hidden: int = Field(ge=64, le=1_000_000, description="model width")
    kv_bytes_per_token: float = Field(ge=1, le=1e9, description="K and V of all layers, bytes")


class SloSpec(_Strict):
    """Latency targets. A request meets the SLO when both hold; the service meets it when the
    share of requests that do is at least `percentile` %."""

    ttft_ms: float = Field(gt=0, description="time to first token, incl. the network")
    tpot_ms: float = Field(gt=0, description="time per output token after the first")
    percentile: float = Field(99.0, gt=0, le=100)


class ReplicaBounds(_Strict):
    min: int = Field(1, ge=0, le=100_000)
    max: int = Field(1, ge=1, le=100_000)
    initial: int | None = Field(None, ge=0, description="replicas at start (default: min)")

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"initial ({self.initial}) is outside [{self.min}, {self.max}]")
        return self

    @property
    def start(self) -> int:
        return self.min if self.initial is None else self.initial


class AutoscaleSpec(_Strict):
    """Scale on queue depth (outstanding requests per ready replica) or on the SLO attainment
    of the requests that finished in the last window. A new replica serves after
    `startup_s` (loading weights); a removed one drains first."""

    enabled: bool = False
    metric: Literal["queue", "slo"] = "queue"
    target_queue: float = Field(8.0, gt=0, description="outstanding per replica to aim at")
    interval_s: float = Field(15.0, gt=0, description="how often the autoscaler looks")
    window_s: float = Field(60.0, gt=0, description="the slo metric's look-back")
    startup_s: float = Field(60.0, ge=0, description="start to ready: weights load")
    cooldown_s: float = Field(120.0, ge=0, description="no scale-down this soon after a change")


class InferenceServiceSpec(_Strict):
    # short enough for every name Kraft derives from it ("<name>-replica", "<name>~deleted-<id>")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
                      description="letters, digits and . _ : / -")
    tenant: str = Field("default", min_length=1)
    model: str | LlmModelSpec = Field(description="a built-in model name, or its figures")
    gpu: str = Field(description="GPU model, a name from the catalog")
    tp: int = Field(1, ge=1, le=72, description="GPUs per replica (tensor parallel)")
    max_batch: int = Field(256, ge=1, le=65_536, description="sequences decoded at once")
    engine_overhead_ms: float = Field(
        0.0, ge=0, le=10_000, description="the serving engine's own time per iteration "
        "(scheduling, sampling) beside the GPU kernels; SplitwiseSim's engine took ~17 ms "
        "per decode step (docs/inference.md)")
    slo: SloSpec
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds)
    autoscale: AutoscaleSpec = Field(default_factory=AutoscaleSpec)
    residency: ResidencySpec = Field(default_factory=ResidencySpec)
    region: str | None = Field(None, description="where the users are, for network latency")
    command: list[str] | None = Field(
        None, description="starts one replica, e.g. [vllm, serve, ...]; Kraft sets PORT")
    router: Literal["round-robin", "least-outstanding", "slo-aware"] = "least-outstanding"
    shared: bool = Field(False, description="other tenants may call it (their residency "
                                            "still decides which replicas serve them)")

    _known_gpu = field_validator("gpu")(NodeGroupSpec._known_model.__func__)

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str | LlmModelSpec) -> str | LlmModelSpec:
        from kraft.infer.latency import MODELS

        if isinstance(model, str) and model not in MODELS:
            raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}, or "
                             "a mapping with name, params_b, layers, hidden, "
                             "kv_bytes_per_token")
        return model

    @model_validator(mode="after")
    def _fits(self) -> InferenceServiceSpec:
        from kraft.infer.latency import kv_capacity_tokens, llm_model

        if kv_capacity_tokens(llm_model(self.model), self.gpu, self.tp) < 1:
            raise ValueError(f"the model's weights do not fit in {self.tp} x {self.gpu} "
                             f"({CATALOG[self.gpu].hbm_gb:g} GB each): raise tp")
        return self
