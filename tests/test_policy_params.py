"""Policies with parameters from the command line and sweeps, and the two baselines other
simulators use: a non-blocking greedy FIFO and a non-preemptive shortest-job-first."""

import json

import pytest
from typer.testing import CliRunner

from kraft.cli import app
from kraft.sched.policy import Fill, make_policy, parse_policy, split_policies

runner = CliRunner()


def test_help_names_every_policy():
    """The list was empty: policies registered after the help text was built."""
    r = runner.invoke(app, ["simulate", "--help"])
    text = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 0
    assert "one of backfill, fairshare, fifo, las, sjf, srtf" in text
    assert "0 = never checkpoint: a preempted or failed job restarts from its beginning" in text


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip().startswith("kraft 0.")


def test_inline_parameters_parse_and_reach_the_policy():
    assert parse_policy("las:thresholds_gpu_s=[1800,7200]") == (
        "las", {"thresholds_gpu_s": [1800, 7200]})
    assert split_policies("fifo,las:thresholds_gpu_s=[1,2],fill=greedy,srtf") == [
        "fifo", "las:thresholds_gpu_s=[1,2],fill=greedy", "srtf"]
    las = make_policy("las:thresholds_gpu_s=[1800,7200],fill=strict")
    assert las.thresholds == (1800, 7200) and las.fill is Fill.STRICT
    assert make_policy("fifo:fill=greedy").fill is Fill.GREEDY
    assert make_policy("fifo").fill is Fill.STRICT  # the override is per instance
    for spec, said in (("fifo:fill=sideways", "fill 'sideways'? Use strict, backfill, greedy"),
                       ("las:thresholds=[1]", "policy las takes thresholds_gpu_s, fill"),
                       ("fifo:nonsense", "give parameters as fifo:KEY=VALUE"),
                       ("lottery", "unknown policy 'lottery'")):
        with pytest.raises(ValueError, match=None) as e:
            make_policy(spec)
        assert said in str(e.value), (spec, e.value)


def _compare(tmp_path, policies):
    r = runner.invoke(app, ["compare", "--policies", policies, "--load", "0.8", "--no-energy",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    return r


def test_greedy_fifo_and_sjf_baselines_on_the_bundled_trace(tmp_path):
    _compare(tmp_path, "fifo,fifo:fill=greedy,sjf,las:thresholds_gpu_s=[1800,7200]")
    res = {d.name: json.loads((d / "results.json").read_text()) for d in tmp_path.iterdir()}
    assert set(res) == {"fifo", "fifo-fill=greedy", "sjf", "las-thresholds_gpu_s=-1800-7200-"}
    jct = {name: r["overall"]["jct_s"]["mean"] for name, r in res.items()}
    # Strict FIFO blocks behind a job that does not fit; greedy lets the rest go past it.
    assert jct["fifo-fill=greedy"] < 0.5 * jct["fifo"]
    # On known run times, shortest first beats arrival order at the same fill.
    assert jct["sjf"] < jct["fifo-fill=greedy"]
    assert res["sjf"]["policy"] == "sjf"
    # The parameter changed LAS's decisions, not only its label.
    default = _compare(tmp_path / "default", "las")
    las_default = json.loads((tmp_path / "default" / "las" / "results.json").read_text())
    assert default.exit_code == 0
    assert (las_default["overall"]["jct_s"]["mean"]
            != res["las-thresholds_gpu_s=-1800-7200-"]["overall"]["jct_s"]["mean"])
