"""The `kraft` command as a user runs it: results, files, and clear errors on bad input."""

import json
import os
import re

import pyarrow.parquet as pq
from typer.testing import CliRunner

from kraft.cli import app

runner = CliRunner()


def test_simulate_writes_results_and_jobs(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", "--load", "0.8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "no-queueing bound" in r.output and "backfill" in r.output
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == "kraft.results/1"
    assert res["jobs"]["submitted"] == res["jobs"]["finished"] == 10281
    assert res["overall"]["slowdown"] >= 1.0
    jobs = pq.read_table(out / "jobs.parquet")
    assert jobs.num_rows == 10281
    assert set(jobs["state"].to_pylist()) == {"done"}
    assert json.loads((out / "timing.json").read_text())["cycles"] > 0


def test_compare_prints_every_policy_and_the_bound():
    r = runner.invoke(app, ["compare", "--policies", "fifo,srtf", "--load", "0.8"])
    assert r.exit_code == 0, r.output
    for word in ("no-queueing bound", "fifo", "srtf"):
        assert word in r.output


def test_bad_inputs_exit_2_without_traceback(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text("name: x\nsites: []\n")
    cases = [
        ["simulate", "--policy", "lottery"],
        ["simulate", "--fleet", str(bad)],
        ["simulate", "--trace", str(tmp_path / "missing.csv")],
        ["simulate", "--load", "-1"],
        ["trace", "convert", "philly-sample", str(tmp_path / "x.txt")],
    ]
    for args in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output
        assert "error:" in r.output
    r = runner.invoke(app, ["simulate", "--fleet", str(bad)])
    assert str(bad) in r.output and "sites" in r.output


def test_trace_convert_then_simulate_the_result(tmp_path):
    dest = tmp_path / "sample.parquet"
    r = runner.invoke(app, ["trace", "convert", "philly-sample", str(dest)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", "--trace", str(dest), "--tenants", "philly-mini",
                            "--out", str(out), "--no-breakdown"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "results.json").read_text())["jobs"]["finished"] == 10281


def test_books_shift_and_eed_through_the_cli(tmp_path):
    out = tmp_path / "fed"
    r = runner.invoke(app, ["simulate", "--fleet", "nordic-federation", "--load", "0.8",
                            "--prefer", "carbon", "--out", str(out), "--no-breakdown"])
    assert r.exit_code == 0, r.output
    for word in ("location", "market", "by site (jobs and idle GPUs)", "narvik", "virginia"):
        assert word in r.output
    res = json.loads((out / "results.json").read_text())
    sites = res["energy"]["per_site"]
    assert all(s["peak_it_mw"] <= s["budget_mw"] for s in sites.values())
    assert "carbon_location_kg" in pq.read_table(out / "jobs.parquet").column_names
    r = runner.invoke(app, ["report", "eed", "--results", str(out), "--period", "2024"])
    assert r.exit_code == 0, r.output
    assert "REF" in r.output and "narvik" in r.output
    r = runner.invoke(app, ["report", "eed", "--results", str(out), "--period", "2023"])
    assert r.exit_code == 2 and "signal year 2024" in r.output
    r = runner.invoke(app, ["shift", "--load", "0.8", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "shift.json").read_text())
    c = s["carbon_location_kg"]
    assert c["limit"] <= c["shifted"] < c["agnostic"]
    assert "Let's Wait Awhile" in r.output


def test_missing_price_is_said_not_invented(tmp_path):
    fleet = tmp_path / "f.yaml"
    fleet.write_text("""
name: f
sites:
  - {name: a, country: "NO", jurisdiction: EEA, grid_zone: NO-NO1, it_power_budget_mw: 1,
     pods: [{name: p, nodes: [{count: 2, gpus: 8, model: H100-SXM}]}]}
""")
    r = runner.invoke(app, ["simulate", "--fleet", str(fleet), "--no-breakdown"])
    assert r.exit_code == 0, r.output
    assert "no energy books for this run" in r.output and "flat_price_eur_per_mwh" in r.output


def test_a_database_that_cannot_be_used_is_named_not_a_traceback(tmp_path):
    """`--db` with another engine, a malformed URL or a server that is not there: exit 2,
    what and why, and never the password."""
    home = str(tmp_path / "home")
    cases = [("mysql://kraft@db/kraft", "Kraft keeps its state in PostgreSQL"),
             ("::", "not a database URL"),
             ("postgresql://kraft:s3cret@127.0.0.1:1/kraft", "Connection refused")]
    for url, said in cases:
        r = runner.invoke(app, ["admin", "tenant", "create", "acme", "--data-dir", home,
                                "--db", url])
        output = " ".join(r.output.split())  # Rich wraps long lines
        assert r.exit_code == 2 and said in output, (url, r.output)
        assert "Traceback" not in r.output and "s3cret" not in r.output


def test_scheduling_options_are_checked_alike_for_both_bodies(tmp_path):
    """`kraft simulate` and `kraft serve` take the same scheduling flags, refused the same way;
    the live service refuses the replay's oracle (it cannot see the future)."""
    for argv, said in (
        (["simulate", "--param", "nonsense"], "--policy-param 'nonsense': give KEY=VALUE"),
        (["simulate", "--param", "depth=3"], "policy backfill takes fill; got depth"),
        (["simulate", "--shift", "wind"], "--shift 'wind'? Use carbon or price"),
        (["simulate", "--forecast", "crystal-ball"], "forecast 'crystal-ball'?"),
        (["serve", "--data-dir", str(tmp_path), "--forecast", "oracle"],
         "--forecast oracle reads the recorded series as if it were the future"),
        (["serve", "--data-dir", str(tmp_path), "--prefer", "vibes"], "--prefer 'vibes'?"),
    ):
        before = dict(os.environ)
        r = runner.invoke(app, argv)
        assert dict(os.environ) == before, "refused, serve must leave the process as it was"
        assert r.exit_code == 2, (argv, r.output)
        assert said in " ".join(r.output.split()), (argv, r.output)
        assert "Traceback" not in r.output


def test_simulate_with_a_real_forecast_and_policy_parameters():
    r = runner.invoke(app, ["simulate", "--load", "0.8", "--shift", "carbon", "--forecast",
                            "recent-days-3", "--flexible-gpus", "1", "--policy", "fairshare",
                            "--param", "half_life_s=7200", "--no-breakdown"])
    assert r.exit_code == 0, r.output


def test_simulate_replays_a_maintenance_plan(tmp_path):
    """Three of the four pods out for a day at the trace's busiest time: the what-if shows
    the cost (jobs wait and are preempted for reservations) and says what was planned; no
    job starts on a pod in its window, and a bad plan is one clear line."""
    plan = tmp_path / "plan.csv"
    plan.write_text("target,start_h,end_h,reason\n" + "".join(
        f"philly/pod-000{p},100,124,cooling\n" for p in range(3)))
    base, maint = tmp_path / "base", tmp_path / "maint"
    for out, extra in ((base, []), (maint, ["--maintenance", str(plan)])):
        r = runner.invoke(app, ["simulate", "--load", "0.8", "--no-breakdown", "--no-energy",
                                "--out", str(out), *extra])
        assert r.exit_code == 0, r.output
    assert "maintenance plan: 3 window(s), 792.0 node-hours out of service" in r.output
    b = json.loads((base / "results.json").read_text())
    m = json.loads((maint / "results.json").read_text())
    assert m["maintenance"] == {"windows": 3, "node_hours": 792.0} and "maintenance" not in b
    assert m["overall"]["queue_delay_s"]["mean"] > b["overall"]["queue_delay_s"]["mean"]
    from kraft.cluster.state import ClusterState
    from kraft.sim.maintenance import load_plan
    from kraft.sim.run import simulate
    from kraft.sim.traces.registry import load_trace
    from kraft.spec.load import load_fleet, load_tenants

    fleet = load_fleet("philly-mini")
    run = simulate(fleet, load_tenants("philly-mini"),
                   load_trace("philly-sample", None), "backfill", load=0.8,
                   maintenance=load_plan(plan))
    rec = run.outcome.segments.record(run.outcome.jobs, ClusterState(fleet).node_name,
                                      run.outcome.end_s)
    inside = [k for k in range(len(rec)) if rec.start_s[k] < 124 * 3600
              and rec.end_s[k] > 100 * 3600]
    assert inside  # work ran through the window, all of it on the pod left in service
    late = [k for k in inside if 100 * 3600 <= rec.start_s[k] < 124 * 3600]
    assert late and all(n.startswith("philly/pod-0003") for k in late for n in rec.nodes[k])
    (tmp_path / "bad.csv").write_text("target,start_h,end_h\nphilly,5,1\n")
    r = runner.invoke(app, ["simulate", "--maintenance", str(tmp_path / "bad.csv")])
    assert r.exit_code == 2 and "bad.csv:2" in r.output and "start_h < end_h" in r.output
    assert "Traceback" not in r.output


def test_tables_keep_numbers_whole_at_100_columns(monkeypatch):
    """Tables were forced to 120+ columns and cut numbers (`20.…`, `104…`) at 120 or less.
    At 100 columns every number is whole; `-o wide` adds the rest of the columns."""
    import kraft.cli

    monkeypatch.setattr(kraft.cli.console, "width", 100)
    for argv in (["compare", "--load", "0.8"], ["simulate", "--load", "0.8"]):
        r = runner.invoke(app, argv)
        assert r.exit_code == 0, r.output
        lines = r.output.splitlines()
        assert max(len(line) for line in lines) <= 100
        assert "…" not in r.output, r.output
        text = " ".join(r.output.split())
        assert "wait: all time not running, requeues after preemption included" in text
    fifo = next(line for line in runner.invoke(app, ["compare", "--load", "0.8"]).output
                .splitlines() if line.startswith("fifo "))
    assert "104.84" in fifo and "20.76" in fifo  # the two numbers that were cut
    wide = runner.invoke(app, ["compare", "--policies", "fifo", "--load", "0.8", "-o", "wide",
                               "--no-energy"])
    assert wide.exit_code == 0 and "cycle" in wide.output and "frag" in wide.output
    bad = runner.invoke(app, ["compare", "-o", "yaml"])
    assert bad.exit_code == 2 and "-o 'yaml'? Use table or wide" in bad.output


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_every_help_reads_at_80_columns():
    """Rich's help at 80 columns squeezed the text into a 20-character column, cut option
    names (`--checkpoint-interv…`) and broke sentences over a dozen lines."""
    import typer

    from kraft.cli import app

    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in _commands(root):
        out = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert out.exit_code == 0, (path, out.output)
        assert max(map(len, out.output.splitlines())) <= 80, path
        # A line may break after a hyphen ("recent-" / "days"), as in print.
        flat = re.sub(r"-\s+", "-", " ".join(out.output.split()))
        for param in cmd.params:
            if param.name != "help":
                for opt in param.opts:
                    assert opt in flat, (path, opt)  # whole, never cut
                if getattr(param, "help", None):  # each help text in one piece
                    assert re.sub(r"-\s+", "-", " ".join(param.help.split())) in flat, \
                        (path, param.name)
        checked += 1
    assert checked > 40
