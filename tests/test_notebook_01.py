"""notebooks/01_toy_world_ablations.ipynb runs top to bottom (nbclient, the python3 kernel of this environment)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_toy_world_ablations.ipynb"


@pytest.mark.slow
def test_notebook_01_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when any cell fails
    stdout = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []) if out.get("name") == "stdout"
    )
    # the tables and the summary lines the prose refers to are there
    for needle in ("== default world, denoise-first ==", "== large-mismatch world, noise-first ==", "IV-IV@49..49", "coherence", "notebook ran in"):
        assert needle in stdout
    images = sum(1 for cell in nb.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))
    assert images >= 4  # the clips, the forms (2×2), guidance, mismatch
