"""The README's code runs as written: the Python API example, and the plugin guide's snippets."""

import re
import tomllib
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def blocks(text: str, language: str) -> list[str]:
    return [re.sub(r"^ {3}", "", b, flags=re.M) for b in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)]


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (code,) = blocks(section("Python API"), "python")
    exec(compile(code, "README: Python API", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["origin", "IV-IV", "IV-IV:nf"]
    assert (tmp_path / "blob.mp4").stat().st_size > 0
    assert (tmp_path / "blob.mp4.json").exists()


def test_quick_start_writes_under_the_ignored_out_folder():
    command = next(line for line in README.splitlines() if line.startswith("python3 -m venv") and "ivmixed generate" in line)
    out = command.split("--out ")[1].split()[0]
    assert out.startswith("out/")
    gitignore = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "/out/" in gitignore


def test_plugin_guide_snippets_are_valid(tmp_path):
    guide = section("Write a backbone plugin")
    assert 'name = "my-backbone"' in guide.split("2. **Describe")[0]  # step 1 says to set the class attribute
    backbone_code, spec_code, contract_code = blocks(guide, "python")  # the backbone itself runs in tests/test_kit.py
    namespace: dict = {}
    exec(compile(spec_code, "README: BackboneSpec", "exec"), namespace)
    spec = namespace["SPEC"]
    assert spec.name == "my-backbone" and spec.factory == "my_package.backbone:MyBackbone"
    with pytest.raises(ModuleNotFoundError, match="my_package"):  # lazy: nothing imported until it is loaded
        spec.load()
    assert [o.name for o in spec.options] == ["model", "image_model", "decode_chunk_size"]
    with pytest.raises(ValueError, match="decode_chunk_size=0"):  # declared options are checked before the import
        spec.load(decode_chunk_size=0)
    namespace: dict = {}  # the snippet imports what it uses
    exec(compile(contract_code, "README: contract", "exec"), namespace)
    from ivmixed.testing import BackboneContract, MissingWeightsContract

    assert issubclass(namespace["TestMyBackbone"], (BackboneContract, MissingWeightsContract))
    options = namespace["build_tiny_weights"](tmp_path)  # the helper is real: it saves loadable folders
    for folder in map(Path, options.values()):
        assert (folder / "model_index.json").is_file() and (folder / "unet" / "config.json").is_file()
    (toml,) = blocks(guide, "toml")
    assert tomllib.loads(toml)["project"]["entry-points"]["ivmixed.backbones"] == {"my-backbone": "my_package.spec:SPEC"}


def test_main_and_test_commands_are_what_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    test_command = next(line for line in README.splitlines() if "python -m pytest" in line and line.startswith("python3 -m venv"))
    assert test_command in ci.splitlines()  # CI runs the README's test command, set-up included, as written


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def test_install_commands_use_the_constraints_file_that_pins_every_dependency():
    root = Path(__file__).resolve().parents[1]
    commands = [line for line in README.splitlines() if line.startswith("python3 -m venv") and "pip install" in line]
    assert len(commands) == 2 and all('pip install -c constraints.txt "torch==' in line for line in commands)
    pinned = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[requirement_name(name)] = version
    wanted = set()
    for pyproject in (root / "pyproject.toml", root / "plugins" / "ivmixed-videocrafter2" / "pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        for requirement in project["dependencies"] + project.get("optional-dependencies", {}).get("test", []):
            wanted.add(requirement_name(requirement))
    assert wanted - {"torch", "ivmixed"} <= set(pinned)  # torch is pinned on the command line
    assert "torch" not in pinned and "ivmixed" not in pinned
