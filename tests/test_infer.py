"""The inference latency model: calibrated on measured rows, never faster than the roofline."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kraft.cli import app
from kraft.infer.latency import MODELS, held_out_error, predict


def test_held_out_calibration_error():
    err = held_out_error()
    assert err["decode"] < 0.15  # the target: median under 15 %
    assert err["prefill"] < 0.15


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(sorted(MODELS)), gpu=st.sampled_from(["A100", "H100-SXM", "B200"]),
       tp=st.sampled_from([1, 2, 4, 8]), batch=st.integers(1, 256),
       prompt=st.integers(1, 32_768), output=st.integers(1, 4096))
def test_never_faster_than_the_hardware_and_monotone(model, gpu, tp, batch, prompt, output):
    p = predict(model, gpu, tp, batch, prompt, output)
    assert p["prefill_ms"] >= p["roofline_prefill_ms"] > 0
    assert p["decode_ms_per_token"] >= p["roofline_decode_ms_per_token"] > 0
    longer = predict(model, gpu, tp, batch, prompt + 1024, output)
    assert longer["prefill_ms"] >= p["prefill_ms"]
    assert predict(model, gpu, tp, batch + 1, prompt, output)["decode_ms_per_token"] >= \
        p["decode_ms_per_token"]


def test_cli_prints_the_three_figures():
    out = CliRunner().invoke(app, ["infer", "predict", "--model", "llama-2-70b", "--gpu",
                                   "H100-SXM", "--tp", "8", "--batch", "16", "--prompt",
                                   "1024", "--json"])
    assert out.exit_code == 0, out.output
    fig = json.loads(out.output)
    assert fig["tokens_per_s"] == round(16 * 1000 / fig["decode_ms_per_token"], 0) or \
        abs(fig["tokens_per_s"] - 16e3 / fig["decode_ms_per_token"]) < 1
    bad = CliRunner().invoke(app, ["infer", "predict", "--gpu", "H900"])
    assert bad.exit_code == 2 and "H900" in bad.output
