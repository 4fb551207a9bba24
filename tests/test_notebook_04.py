"""notebooks/04_evaluate.ipynb: stored as tools/make_notebook_04.py builds it, with outputs, and it runs top to bottom."""

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_evaluate.ipynb"


def stdout_of(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("name") == "stdout")


def images_of(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


def test_the_stored_notebook_is_the_generated_one_with_its_outputs():
    spec = importlib.util.spec_from_file_location("make_notebook_04", ROOT / "tools" / "make_notebook_04.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    built = tool.build()
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in built.cells]
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None and c.outputs for c in code)  # executed, every cell shows something
    assert "paired differences against origin on the same (prompt, seed):" in stdout_of(stored)
    assert images_of(stored) == 1


@pytest.mark.slow
def test_notebook_04_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, when any cell fails
    out = stdout_of(nb)
    for needle in (
        "$ ivmixed batch prompts.txt --programs origin,IV-IV --seeds 2",
        "32 generated, 0 recovered, 0 already finished, 0 failed, of 32 videos",
        "motion             from ivmixed  [can run here]",
        "origin (baseline)",
        "paired differences against origin on the same (prompt, seed):",
        "wrote runs/toy/eval/eval.json, runs/toy/eval/eval.md, runs/toy/eval/quality_cost.png",
        "cost: 5.0× origin's model evaluations",
        "notebook ran in",
    ):
        assert needle in out, needle
    # what the prose says of the outputs: IV-IV's frame error lower on the pairs, coherence equal
    frame = next(line for line in out.splitlines() if line.startswith("frame_error  IV-IV − origin"))
    low, high = (float(x) for x in frame.split("95% [")[1].split("]")[0].split(","))
    assert low < high < 0
    assert "coherence    IV-IV − origin = +0.00000  95% [+0.00000, +0.00000]" in out
    assert images_of(nb) == 1
    assert (tmp_path / "runs" / "toy" / "eval" / "quality_cost.png").stat().st_size > 0
