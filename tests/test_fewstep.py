"""The few-step backbones ``animatediff-lightning`` and ``animatelcm`` on tiny random weights, through the real loading path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.cli import main

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAPER_FORMS = ["origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV"]
SIZE = dict(frames=3, height=32, width=40)
PROMPTS, NEGATIVE = ["two horses race at sunset", "a red car"], "blurry, low quality"


@pytest.fixture(scope="module")
def few_step_models(tiny_models, tmp_path_factory):
    """A Lightning repo folder (4- and 8-step files), its adapter config, an AnimateLCM repo folder."""
    from ivmixed.testing import tiny

    root = tmp_path_factory.mktemp("few_step")
    return {
        "lightning": tiny.save_lightning(root / "lightning", steps=(4, 8)),
        "lightning_config": tiny.save_motion_adapter_config(root / "lightning_config"),
        "animatelcm": tiny.save_animatelcm(root / "animatelcm", tiny_models.sd15),
    }


@pytest.fixture(scope="module")
def lightning_options(tiny_models, few_step_models):
    return {
        "model": str(tiny_models.sd15),
        "motion_module": str(few_step_models["lightning"]),
        "motion_module_config": str(few_step_models["lightning_config"]),
        "image_model": str(tiny_models.image_unet),
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def lcm_options(tiny_models, few_step_models):
    return {
        "model": str(tiny_models.sd15),
        "motion_adapter": str(few_step_models["animatelcm"]),
        "lcm_lora": str(few_step_models["animatelcm"]),
        "image_model": str(tiny_models.image_unet),
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def lightning(lightning_options):
    return ivmixed.load("animatediff-lightning", **lightning_options)


@pytest.fixture(scope="module")
def animatelcm(lcm_options):
    return ivmixed.load("animatelcm", **lcm_options)


# -- the stock recipes of the model cards ---------------------------------------------------------------------


def stock_lightning(base: str, checkpoint: str, config_folder: str):
    """The Lightning model card: MotionAdapter + load_state_dict of the file, Euler trailing with linear betas."""
    from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler, MotionAdapter
    from safetensors.torch import load_file

    adapter = MotionAdapter.from_config(MotionAdapter.load_config(config_folder))
    adapter.load_state_dict(load_file(checkpoint))
    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=adapter)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", beta_schedule="linear")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_animatelcm(base: str, repo: str, scale: float = 0.8):
    """The AnimateLCM model card: MotionAdapter.from_pretrained, LCMScheduler with linear betas, the LoRA at 0.8."""
    from diffusers import AnimateDiffPipeline, LCMScheduler, MotionAdapter

    adapter = MotionAdapter.from_pretrained(repo)
    pipe = AnimateDiffPipeline.from_pretrained(base, motion_adapter=adapter)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")
    pipe.load_lora_weights(repo, weight_name="AnimateLCM_sd15_t2v_lora.safetensors", adapter_name="lcm-lora")
    pipe.set_adapters(["lcm-lora"], [scale])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_frames(pipe, *, steps: int, guidance: float, seed: int, negative: bool = True) -> np.ndarray:
    extra = {"negative_prompt": [NEGATIVE] * len(PROMPTS)} if negative else {}
    out = pipe(
        PROMPTS,
        num_frames=SIZE["frames"],
        height=SIZE["height"],
        width=SIZE["width"],
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        **extra,
    )
    return np.asarray(out.frames)


def test_list_shows_both(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "animatediff-lightning from ivmixed" in out
    assert "animatelcm     from ivmixed" in out


@pytest.mark.parametrize("steps", [4, 8])
def test_lightning_origin_equals_stock_pipeline(tiny_models, few_step_models, lightning_options, steps):
    ours = ivmixed.load("animatediff-lightning", **lightning_options, distilled_steps=steps)
    assert ours.defaults.steps == steps and ours.defaults.guidance == 1.0
    video = ours.generate(PROMPTS, program="origin", seed=7, progress=False, **SIZE)  # the defaults: N = file's steps, ω 1
    checkpoint = few_step_models["lightning"] / f"animatediff_lightning_{steps}step_diffusers.safetensors"
    stock = stock_lightning(str(tiny_models.sd15), str(checkpoint), str(few_step_models["lightning_config"]))
    expected = stock_frames(stock, steps=steps, guidance=1.0, seed=7, negative=False)
    difference = float(np.abs(expected - video.frames).max())
    print(f"animatediff-lightning {steps}-step origin vs stock AnimateDiffPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == expected.shape == (2, 3, 32, 40, 3)
    assert difference <= 1e-4


def test_animatelcm_origin_equals_stock_pipeline(tiny_models, few_step_models, animatelcm):
    assert (animatelcm.defaults.steps, animatelcm.defaults.guidance) == (6, 2.0)
    video = animatelcm.generate(PROMPTS, program="origin", seed=5, negative_prompt=NEGATIVE, progress=False, **SIZE)
    stock = stock_animatelcm(str(tiny_models.sd15), str(few_step_models["animatelcm"]))
    expected = stock_frames(stock, steps=6, guidance=2.0, seed=5)
    difference = float(np.abs(expected - video.frames).max())
    print(f"animatelcm origin vs stock AnimateDiffPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == expected.shape == (2, 3, 32, 40, 3)
    assert difference <= 1e-4
