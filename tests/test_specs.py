"""Specs load, and a wrong spec names the file, the field and what is allowed."""

import pytest

from kraft.catalog import CATALOG
from kraft.spec.load import SpecError, bundled_names, load_fleet, load_tenants

REQUIRED_MODELS = ["P100", "V100", "T4", "A10", "A100", "H100-SXM", "H200", "B200", "GB200"]


def test_catalog_has_the_models_with_sources():
    for name in REQUIRED_MODELS:
        m = CATALOG[name]
        assert m.rated_power_w > m.idle_power_w > 0
        assert m.bf16_flops > 0 and m.hbm_gb > 0 and m.hbm_bandwidth_tbps > 0
        assert "data sheet" in m.source
    assert CATALOG["H100-SXM"].bf16_flops == 989e12 and CATALOG["H100-SXM"].rated_power_w == 700


def test_bundled_fleets_have_their_documented_sizes():
    assert {"philly", "philly-mini", "openb", "stargate-norway"} <= set(bundled_names("fleets"))
    assert load_fleet("philly").gpu_count == 352 * 8
    assert load_fleet("openb").gpu_count == 6212  # Alibaba openb GPU node list
    sg = load_fleet("stargate-norway")
    assert 99_000 <= sg.gpu_count <= 101_000
    assert sg.sites[0].grid_zone == "NO-NO4" and sg.sites[0].it_power_budget_mw == 230
    for name in bundled_names("tenants"):
        load_tenants(name)


def write(tmp_path, text):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_unknown_gpu_model_names_file_field_and_allowed(tmp_path):
    p = write(tmp_path, """
name: x
sites:
  - {name: a, country: NO, jurisdiction: EEA, grid_zone: NO-NO1, it_power_budget_mw: 1,
     pods: [{name: p, nodes: [{count: 2, gpus: 8, model: H900}]}]}
""")
    with pytest.raises(SpecError) as e:
        load_fleet(str(p))
    msg = str(e.value)
    assert str(p) in msg
    assert "sites.0.pods.0.nodes.0.model" in msg
    assert "H900" in msg and "H100-SXM" in msg


def test_bad_tier_and_missing_field(tmp_path):
    p = write(tmp_path, "tenants:\n  - {name: a, tier: gold}\n  - {tier: spot}\n")
    with pytest.raises(SpecError) as e:
        load_tenants(str(p))
    msg = str(e.value)
    assert "tenants.0.tier" in msg and "'reserved', 'on-demand' or 'spot'" in msg
    assert "tenants.1.name" in msg and "Field required" in msg


def test_reservation_needs_reserved_tier(tmp_path):
    p = write(tmp_path, "tenants:\n  - {name: a, tier: spot, reserved_gpus: 8}\n")
    with pytest.raises(SpecError, match="needs tier 'reserved'"):
        load_tenants(str(p))


def test_broken_yaml_gives_line(tmp_path):
    p = write(tmp_path, "name: x\nsites: [\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line \d+"):
        load_fleet(str(p))


def test_unknown_bundled_name_lists_the_bundled_ones():
    with pytest.raises(SpecError, match="bundled: .*philly"):
        load_fleet("no-such-fleet")


def test_tenant_mapping_rule():
    spec = load_tenants("stargate-norway")
    assert spec.resolve("startup-07").name == "startups"
    assert spec.resolve("lab").name == "lab"
    assert spec.resolve("somebody-else").name == "default"


def test_executor_spec_errors_name_the_field(tmp_path):
    site = ("{name: a, country: \"NO\", jurisdiction: EEA, grid_zone: NO-NO1, it_power_budget_mw: 1,"
            " executor: %s, pods: [{name: p, nodes: [{count: 2, gpus: 4, model: H100-SXM}]}]}")
    p = write(tmp_path, "name: x\nsites:\n  - " + site % "{kind: kubernetes}\n")
    with pytest.raises(SpecError) as e:
        load_fleet(str(p))
    assert "sites.0.executor.kind" in str(e.value) and "slurm" in str(e.value)
    p = write(tmp_path, "name: x\nsites:\n  - " + site % "{kind: slurm, nodes: [n1]}\n")
    with pytest.raises(SpecError) as e:
        load_fleet(str(p))
    assert "executor.nodes names 1 nodes; the site has 2" in str(e.value)
    assert load_fleet("slurm-local").sites[0].executor.nodes == ["node1", "node2"]


def test_unknown_field_names_the_fields_allowed_there(tmp_path):
    """A typo (`gpu` for `gpus`) deep in a spec: the error names the file, the field and the
    fields allowed at that place, not the top level's."""
    p = write(tmp_path, """
name: x
sites:
  - {name: a, country: NO, jurisdiction: EEA, grid_zone: NO-NO1, it_power_budget_mw: 1,
     pods: [{name: p, nodes: [{count: 2, gpu: 8, model: H100-SXM}]}]}
""")
    with pytest.raises(SpecError) as e:
        load_fleet(str(p))
    msg = str(e.value)
    assert str(p) in msg
    assert "sites.0.pods.0.nodes.0.gpu: unknown field; allowed: count, gpus, model" in msg


def test_hostile_spec_files_end_with_a_clear_error(tmp_path):
    """Not UTF-8, nested 10,000 deep, a billion nodes, megabytes: the file and what is wrong,
    with bounded memory."""
    cases = {"latin1.yaml": ("name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
             "deep.yaml": (b"name: " + b"[" * 10000 + b"]" * 10000 + b"\n", "nested too deeply"),
             "huge.yaml": (b"name: x\n" + b"#" * (5 << 20), "over 4 MiB"),
             "billion.yaml": (b"name: x\nsites: [{name: s, country: 'NO', jurisdiction: EEA, "
                              b"grid_zone: NO-NO1, it_power_budget_mw: 1, pods: [{name: p, "
                              b"count: 100000, nodes: [{count: 100000, gpus: 8, "
                              b"model: H100-SXM}]}]}]\n", "at most 1,000,000")}
    for name, (data, said) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(SpecError) as e:
            load_fleet(str(p))
        assert str(p) in str(e.value) and said in str(e.value), (name, str(e.value))
