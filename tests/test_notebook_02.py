"""The real-backbone notebook runs from top to bottom on each diffusers backbone, with tiny models standing in for the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_real_backbones.ipynb"


@pytest.mark.parametrize("backbone", ["animatediff", "modelscope"])
def test_real_backbones_notebook_runs_on_tiny_models(backbone, tiny_models, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    env = {
        "IVMIXED_NB_BACKBONE": backbone,
        "IVMIXED_AD_MODEL": str(tiny_models.sd15),
        "IVMIXED_AD_MOTION_ADAPTER": str(tiny_models.motion_adapter),
        "IVMIXED_AD_IMAGE_MODEL": str(tiny_models.image_unet),
        "IVMIXED_MS_MODEL": str(tiny_models.modelscope),
        "IVMIXED_MS_IMAGE_MODEL": str(tiny_models.sd15_ms),
        "IVMIXED_NB_STEPS": "3",
        "IVMIXED_NB_FRAMES": "3",
        "IVMIXED_NB_SIZE": "32",
        "IVMIXED_NB_DEVICE": "cpu",
        "IVMIXED_NB_OUT": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",  # tiny models: thread start-up would dominate
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns figures into outputs
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "loaded in" in outputs and backbone in outputs
    assert "IV-IV+VV-VV@i%3=2" in outputs
    assert "step 1 sub-step 4: S (vdm, go)" in outputs
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images == 2  # the programs figure and the ramps figure
    assert (tmp_path / f"{backbone}_iv_iv.mp4").is_file() and (tmp_path / f"{backbone}_iv_iv.mp4.json").is_file()
