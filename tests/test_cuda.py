"""The diffusers backbones on a CUDA device: fp16 end to end, tiny models and full-size random UNets. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ivmixed

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SMALL = dict(frames=4, height=32, width=40, steps=4, progress=False)


def stock(name: str, tiny_models, dtype):
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, TextToVideoSDPipeline

    if name == "animatediff":
        adapter = MotionAdapter.from_pretrained(str(tiny_models.motion_adapter), torch_dtype=dtype)
        pipe = AnimateDiffPipeline.from_pretrained(str(tiny_models.sd15), motion_adapter=adapter, torch_dtype=dtype)
    else:
        pipe = TextToVideoSDPipeline.from_pretrained(str(tiny_models.modelscope), torch_dtype=dtype)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda")


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_fp16_is_the_cuda_default_and_every_form_runs(name, request):
    options = {**request.getfixturevalue(f"tiny_{name}"), "device": "cuda"}
    backbone = ivmixed.load(name, **options)
    assert backbone.dtype == torch.float16 and backbone.describe()["dtype"] == "fp16"
    for program in ("origin", "IV-IV", "RR-II", "VV-VV:nf", "IV-IV+VV-VV@i%3=2"):
        video = backbone.generate("two horses race at sunset", program=program, seed=1, **SMALL)
        assert video.latents.device.type == "cuda" and video.latents.dtype == torch.float16
        assert np.isfinite(video.frames).all() and video.frames.dtype == np.float32


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_fp16_origin_matches_the_stock_pipeline_in_fp16(name, request, tiny_models):
    options = {**request.getfixturevalue(f"tiny_{name}"), "device": "cuda", "dtype": "fp16"}
    ours = ivmixed.load(name, **options).generate(["a horse", "a car"], program="origin", seed=3, negative_prompt="blurry", **SMALL)
    expected = stock(name, tiny_models, torch.float16)(
        ["a horse", "a car"],
        num_frames=SMALL["frames"],
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=7.5,
        negative_prompt=["blurry"] * 2,
        generator=torch.Generator("cpu").manual_seed(3),
        output_type="np",
    ).frames
    difference = float(np.abs(np.asarray(expected) - ours.frames).max())
    print(f"{name} fp16 CUDA origin vs stock: max |Δ| = {difference:.3g}")
    assert difference <= 1e-2  # fp16 kernels may pick different algorithms run to run


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_bf16_on_cuda(name, request):
    options = {**request.getfixturevalue(f"tiny_{name}"), "device": "cuda", "dtype": "bf16"}
    video = ivmixed.load(name, **options).generate("a horse", program="IV-IV", seed=1, **SMALL)
    assert video.latents.dtype == torch.bfloat16 and np.isfinite(video.frames).all()


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    free, total = torch.cuda.mem_get_info()
    if total < 16 * 2**30:
        pytest.skip(f"full-size UNets need a GPU with 16 GiB or more; this one has {total / 2**30:.0f} GiB")
    from ivmixed.testing import tiny as tiny_models

    return tiny_models.save_full_size(tmp_path_factory.mktemp("full_size"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_full_size_random_unets_in_fp16(name, full_size):
    if name == "animatediff":
        options = {"model": str(full_size["sd15"]), "motion_adapter": str(full_size["motion_adapter"]), "image_model": str(full_size["sd15"])}
    else:
        options = {"model": str(full_size["modelscope"]), "image_model": str(full_size["sd15"])}
    backbone = ivmixed.load(name, device="cuda", **options)
    torch.cuda.reset_peak_memory_stats()
    for program in ("origin", "IV-IV"):
        video = backbone.generate("two horses race at sunset", program=program, seed=0, frames=8, height=256, width=256, steps=3, progress=False)
        assert video.latents.dtype == torch.float16
        assert torch.isfinite(video.latents).all()
    print(f"{name}: full-size UNets, 8 frames at 256 px, peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if name == "modelscope":
        assert backbone.image_latent_size == (64, 64)  # the SD1.5 UNet's sample size: 32 → 64 nearest, as released
