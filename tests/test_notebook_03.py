"""The plugin guide notebook runs from top to bottom."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_write_a_plugin.ipynb"


def test_write_a_plugin_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "IV-IV+VV-VV@i%3=2" in outputs
    assert "ivmixed-gaussian-clips-demo -> from an entry point" in outputs
    assert "passed" in outputs and "failed" not in outputs
