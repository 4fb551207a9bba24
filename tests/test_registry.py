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
    # the fine plugin's factory returns a tuple: loading it says so instead of failing later on a missing attribute
    with pytest.raises(ivmixed.registry.PluginError, match=r"backbone 'fine' \(from ivmixed-broken-plugin\): its factory <lambda> returned tuple, not a Backbone"):
        ivmixed.load("fine", x=1)
    with pytest.raises(ImportError, match="backbone 'broken' \\(from ivmixed-broken-plugin\\) is broken: ModuleNotFoundError"):
        ivmixed.load("broken")


def test_register_backbone_at_run_time():
    def factory(size=3):
        from ivmixed.backbones.toyworld import ToyBackbone

        return ToyBackbone(frames=size)

    register_backbone("notebook-one", factory, summary="defined in a notebook")
    try:
        found, _ = discover()
        assert found["notebook-one"].distribution == "(registered at run time)"
        assert ivmixed.load("notebook-one", size=5).defaults.frames == 5
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


def test_a_plugin_calling_sys_exit_at_import_breaks_nothing(plugin_path, capsys):
    plugin_path("ivmixed-exits", {"exits": "ivmixed_exits_mod:SPEC"}, {"ivmixed_exits_mod": "import sys\nsys.exit(2)\n"})
    found, broken = discover()
    assert "toy" in found and [(b.name, b.error) for b in broken] == [("exits", "SystemExit: 2")]
    from ivmixed.cli import main

    assert main(["list"]) == 0
    assert "exits" in capsys.readouterr().out
    with pytest.raises(ImportError, match="backbone 'exits' .* is broken: SystemExit: 2"):
        ivmixed.load("exits")


def test_a_plugin_named_like_a_builtin_does_not_silently_win(plugin_path, capsys, caplog, tmp_path, monkeypatch):
    plugin_path(
        "aaa-impostor",  # sorts before "ivmixed": the name order alone would let it win
        {"toy": "ivmixed_impostor_mod:SPEC"},
        {"ivmixed_impostor_mod": """
            from ivmixed.registry import BackboneSpec
            SPEC = BackboneSpec(name="toy", factory=lambda **kw: 1, summary="an impostor")
        """},
    )
    found, _ = discover()
    assert found["toy"].distribution == "ivmixed" and found["toy"].summary.startswith("analytic video world")
    assert found["aaa-impostor:toy"].distribution == "aaa-impostor"
    assert "--backbone aaa-impostor:toy" in found["toy"].conflict
    from ivmixed.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "NAME CONFLICT: the name 'toy' is also registered by aaa-impostor; this one (from ivmixed) is used" in out
    assert "aaa-impostor:toy" in out
    monkeypatch.setattr(ivmixed.registry, "_WARNED", set())
    with caplog.at_level("WARNING", logger="ivmixed.registry"):
        get_spec("toy")
    assert "this one (from ivmixed) is used; choose the other with --backbone aaa-impostor:toy" in caplog.text
    # the other one is reachable by its qualified name, and its factory's bad return value is named
    assert main(["generate", "--backbone", "aaa-impostor:toy", "--out", str(tmp_path / "x.gif")]) == 1
    assert "returned int, not a Backbone" in capsys.readouterr().err


def test_a_factory_returning_something_else_is_named_in_the_cli(tmp_path, capsys):
    register_backbone("returns-int", lambda **kw: 1, size_multiple=1)
    try:
        from ivmixed.cli import main

        assert main(["generate", "--backbone", "returns-int", "--out", str(tmp_path / "x.gif")]) == 1
        err = capsys.readouterr().err
        assert "backbone 'returns-int' (from (registered at run time)): its factory" in err
        assert "returned int, not a Backbone" in err and "Traceback" not in err
        assert list(tmp_path.iterdir()) == []
    finally:
        unregister_backbone("returns-int")
