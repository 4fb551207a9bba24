"""Shared pytest fixtures. Tests never reach the network: the Hugging Face hub is put offline here.

Tiny diffusers models (see :mod:`ivmixed.testing.tiny`) are built once per session into a temporary folder:

- ``tiny_models``: every folder (a :class:`ivmixed.testing.tiny.TinyModels`);
- ``tiny_animatediff``, ``tiny_modelscope``: ready backbone options (``ivmixed.load(name, **options)``);
- ``tiny_sd15``: an SD1.5-layout pipeline folder;
- ``torch_single_thread``: run a test with one torch thread (tiny models are dominated by thread
  start-up costs, and two busy threads on a shared 2-core machine slow them a hundredfold).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from ivmixed.testing import tiny as builders

    return builders.build_all(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_animatediff(tiny_models) -> dict:
    """Options of a tiny ``animatediff`` backbone: SD base + motion adapter folders, a UNet folder as the IDM."""
    return {
        "model": str(tiny_models.sd15),
        "motion_adapter": str(tiny_models.motion_adapter),
        "image_model": str(tiny_models.image_unet),
        "device": "cpu",
    }


@pytest.fixture(scope="session")
def tiny_modelscope(tiny_models) -> dict:
    """Options of a tiny ``modelscope`` backbone: a TextToVideoSD folder, an SD folder whose UNet size (8) differs from the latents (4)."""
    return {"model": str(tiny_models.modelscope), "image_model": str(tiny_models.sd15_ms), "device": "cpu"}


@pytest.fixture(scope="session")
def tiny_sd15(tiny_models) -> Path:
    return tiny_models.sd15


@pytest.fixture
def torch_single_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
