"""Fixtures of the plugin's tests: no network, tiny VideoCrafter2 weights built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_videocrafter2(tmp_path_factory) -> dict:
    """Options of a tiny ``videocrafter2`` backbone: a VideoCrafter2 UNet folder, zeroscope-layout components, an SD1.5 folder."""
    from ivmixed.testing import tiny

    from ivmixed_videocrafter2.unet import VideoCrafter2UNet

    root = tmp_path_factory.mktemp("tiny_videocrafter2")
    components = tiny.save_modelscope(root / "components", seed=30)  # text encoder, tokenizer, VAE, scheduler
    stock = tiny.tiny_unet3d(seed=31)
    unet = VideoCrafter2UNet(**{k: v for k, v in stock.config.items() if not k.startswith("_")}, fps_cond=True)
    unet.load_state_dict(stock.state_dict(), strict=False)  # stock weights; the fps branch keeps its random init
    unet.save_pretrained(str(root / "videocrafter2"))
    image = tiny.save_sd15(root / "sd15", seed=32)
    return {"model": str(root / "videocrafter2"), "components": str(components), "image_model": str(image), "device": "cpu"}


@pytest.fixture(autouse=True)
def torch_single_thread():
    """Tiny models are dominated by thread start-up costs; one thread keeps them fast on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
