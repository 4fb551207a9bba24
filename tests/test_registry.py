"""The backbone registry: entry points, lazy loading, broken plugins, run-time registration, clear errors."""

import json
import subprocess
import sys
import textwrap

import pytest

import ivmixed
from ivmixed.registry import BackboneSpec, discover, get_spec, register_backbone, unregister_backbone


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on sys.path holding installed-looking distributions (dist-info with entry_points.txt)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def add(dist: str, entry_points: dict[str, str], modules: dict[str, str] = {}):
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"  # wheel naming: the name is escaped
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[ivmixed.backbones]\n{lines}\n")
        for name, source in modules.items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))

    return add


def test_builtins_come_from_ivmixed_through_the_entry_point_group():
    found, broken = discover()
    for name in ("toy", "animatediff", "modelscope"):
        assert found[name].distribution == "ivmixed"
    assert list(found) == sorted(found)  # deterministic order


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ivmixed.UnknownBackbone, match=r"unknown backbone 'nope'; known backbones: .*animatediff.*toy"):
        get_spec("nope")


def test_broken_plugin_is_reported_and_breaks_nothing(plugin_path):
    plugin_path(
        "ivmixed-broken-plugin",
        {"broken": "ivmixed_broken_mod:SPEC", "fine": "ivmixed_fine_mod:SPEC"},
        {
            "ivmixed_broken_mod": "import a_module_that_does_not_exist\n",
            "ivmixed_fine_mod": """
                from ivmixed.registry import BackboneSpec
                SPEC = BackboneSpec(name="fine", factory=lambda **kw: ("built", kw), summary="a fine plugin")
            """,
        },
    )
    found, broken = discover()
    assert [b.name for b in broken] == ["broken"]
    assert broken[0].distribution == "ivmixed-broken-plugin"
    assert "ModuleNotFoundError" in broken[0].error and "a_module_that_does_not_exist" in broken[0].error
    assert found["fine"].distribution == "ivmixed-broken-plugin"
    assert "toy" in found
    assert ivmixed.load("fine", x=1) == ("built", {"x": 1})
    with pytest.raises(ImportError, match="backbone 'broken' \\(from ivmixed-broken-plugin\\) is broken: ModuleNotFoundError"):
        ivmixed.load("broken")


def test_register_backbone_at_run_time():
    def factory(size=3):
        return {"size": size}

    register_backbone("notebook-one", factory, summary="defined in a notebook")
    try:
        found, _ = discover()
        assert found["notebook-one"].distribution == "(registered at run time)"
        assert ivmixed.load("notebook-one", size=5) == {"size": 5}
        with pytest.raises(ValueError, match="backbone 'notebook-one' does not take option\\(s\\) model; it takes: size"):
            ivmixed.load("notebook-one", model="x")
    finally:
        unregister_backbone("notebook-one")
    assert "notebook-one" not in discover()[0]


def test_missing_requirement_gives_an_install_hint():
    spec = BackboneSpec(name="needs", factory=dict, requires=("no_such_module_here",), install_hint="pip install no-such")
    assert spec.missing_requirements() == ["no_such_module_here"]
    with pytest.raises(ImportError, match="needs no_such_module_here.*pip install no-such"):
        spec.load()
    assert spec.availability()["can_run"] is False


def test_discovery_and_parse_do_not_import_torch():
    code = (
        "import sys, ivmixed\n"
        "from ivmixed.registry import discover\n"
        "found, broken = discover()\n"
        "ivmixed.parse('IV-IV')\n"
        "print(sorted(found), 'torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False False"), out


def test_list_json_tells_what_can_run(capsys):
    from ivmixed.cli import main

    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["toy"]["can_run"] is True
    assert rows["toy"]["distribution"] == "ivmixed"
    for name in ("animatediff", "modelscope"):
        row = rows[name]
        assert row["status"] == "ok"
        assert set(row["weights_local"]) == set(row["default_models"])
        # it can run when its default weights are local (on a CPU too, with a note saying it is slow)
        assert row["can_run"] is all(row["weights_local"].values())
        assert row["note"] == ("runs on the CPU, slowly (no CUDA here)" if row["can_run"] and not row["cuda"] else "")
