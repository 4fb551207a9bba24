"""The ``modelscope`` backbone on tiny random weights, loaded from folders through the real loading path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.steps import ddim_step
from ivmixed.testing import BackboneContract, MissingWeightsContract

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PAPER_FORMS = ["origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV"]
SMALL = dict(frames=3, height=32, width=40, steps=4, progress=False)


@pytest.fixture(scope="module")
def backbone(tiny_modelscope):
    return ivmixed.load("modelscope", **tiny_modelscope)


class TestContract(BackboneContract, MissingWeightsContract):
    name = "modelscope"
    size = dict(frames=2, height=32, width=32, steps=3)
    prompts = ("two horses race at sunset", "a skier in powder snow")

    @pytest.fixture(scope="class")
    def options(self, tiny_modelscope):
        return tiny_modelscope

    @pytest.fixture(scope="class")
    def missing_options(self):
        ids = ["ivmixed-tests/absent-t2v", "ivmixed-tests/absent-sd15"]
        return {"model": ids[0], "image_model": ids[1], "device": "cpu"}, ids


def test_origin_equals_stock_text_to_video_pipeline(tiny_models, backbone):
    from diffusers import DDIMScheduler, TextToVideoSDPipeline

    prompts, negative = ["two horses race at sunset", "a red car"], "blurry, low quality"
    video = backbone.generate(prompts, program="origin", seed=7, guidance=9.0, negative_prompt=negative, **SMALL)

    stock = TextToVideoSDPipeline.from_pretrained(str(tiny_models.modelscope))
    stock.scheduler = DDIMScheduler.from_config(stock.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    stock.set_progress_bar_config(disable=True)
    expected = stock(
        prompts,
        num_frames=SMALL["frames"],
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=9.0,
        negative_prompt=[negative] * 2,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
    ).frames
    difference = float(np.abs(np.asarray(expected) - video.frames).max())
    print(f"modelscope origin vs stock TextToVideoSDPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == np.asarray(expected).shape == (2, 3, 32, 40, 3)
    assert difference <= 1e-4


@pytest.fixture(scope="module")
def origin_frames(backbone):
    return backbone.generate("two horses race at sunset", program="origin", seed=3, **SMALL).frames


@pytest.mark.parametrize("form", PAPER_FORMS)
def test_every_paper_form_gives_finite_frames(backbone, origin_frames, form):
    video = backbone.generate("two horses race at sunset", program=form, seed=3, **SMALL)
    assert video.frames.shape == (1, 3, 32, 40, 3)
    assert np.isfinite(video.frames).all()
    if form == "IV-IV":
        assert np.abs(video.frames - origin_frames).max() > 1e-3


# -- the reference preset against the released code (reference-code-notes §1.2) -------------------------------


class NetworkCalls:
    """Records, in order, which UNet ran, at which timestep and on which latent size."""

    def __init__(self, backbone):
        self.calls: list[tuple[str, int, tuple[int, int]]] = []
        self.handles = [
            backbone.image_unet.register_forward_pre_hook(self._hook("idm"), with_kwargs=True),
            backbone.unet.register_forward_pre_hook(self._hook("vdm"), with_kwargs=True),
        ]

    def _hook(self, which):
        def record(module, args, kwargs):
            timestep = args[1] if len(args) > 1 else kwargs["timestep"]
            self.calls.append((which, int(timestep), tuple(args[0].shape[-2:])))

        return record

    def close(self):
        for handle in self.handles:
            handle.remove()


RELEASED_SCALE = 4.000000953674316  # the released float32 Karras ramp with begin = end = 4 (notes §2)


def released_modelscope_ops(t: int, delta: int = 20) -> list[tuple]:
    """Ops 1-5 of ``ModelScopeT2V.forward_IVIV`` at loop timestep t: (model, eval timestep, from, to, scale)."""
    prev_t, prev_prev_t = max(0, t - delta), max(0, t - 2 * delta)
    s = RELEASED_SCALE
    return [
        ("idm", t, t, prev_t, s),  # op 1: image UNet at t, CFG+ sI, DDIM(t)
        ("vdm", prev_t, prev_t, prev_prev_t, s),  # op 2: video UNet at prev_t, CFG+ sV, DDIM(prev_t)
        ("idm", prev_prev_t, prev_prev_t, prev_t, -s),  # op 3: image UNet at prev_prev_t, CFG− sI, INV(prev_t)
        ("vdm", prev_t, prev_t, t, -s),  # op 4: video UNet at prev_t, CFG− sV, INV(t)
        ("vdm", t, t, None, 7.5),  # op 5: the standard step, video UNet at t, ω = 7.5
    ]


def test_reference_preset_reproduces_the_released_modelscope_sub_steps(backbone):
    events, calls = [], NetworkCalls(backbone)
    try:
        backbone.generate("a horse", preset="reference", seed=0, steps=50, frames=2, height=32, width=32, callback=events.append, progress=False, decode=False)
    finally:
        calls.close()
    timesteps = sorted({e.t_from for e in events if e.letter == "S"}, reverse=True)
    assert timesteps[:6] == [999, 979, 958, 938, 917, 897] and timesteps[-3:] == [41, 20, 0]

    for step in (0, 1, 2, 25, 47, 48, 49):
        t = timesteps[step]
        expected = released_modelscope_ops(t)
        got = [e for e in events if e.step == step]
        assert [(e.model, e.t_from, e.t_to if e.letter != "S" else None, e.scale) for e in got] == [
            (m, t_from, t_to, scale) for m, _, t_from, t_to, scale in expected
        ], f"step {step} (t = {t})"
        # what the networks actually saw: the evaluation timestep, and the image UNet at its own sample size (8)
        ran = calls.calls[5 * step : 5 * step + 5]
        assert [(which, timestep) for which, timestep, _ in ran] == [(m, at) for m, at, _, _, _ in expected]
        assert [size for which, _, size in ran if which == "idm"] == [(8, 8), (8, 8)]
        assert [size for which, _, size in ran if which == "vdm"] == [(4, 4)] * 3


@pytest.mark.parametrize("size, seen", [(None, (8, 8)), (0, (4, 4)), (12, (12, 12))])
def test_image_latent_size_sets_what_the_image_model_sees(tiny_modelscope, size, seen):
    options = dict(tiny_modelscope) if size is None else {**tiny_modelscope, "image_latent_size": size}
    bb = ivmixed.load("modelscope", **options)
    calls = NetworkCalls(bb)
    try:
        bb.generate("a horse", program="I-I", seed=0, steps=2, frames=2, height=32, width=32, progress=False, decode=False)
    finally:
        calls.close()
    assert {s for which, _, s in calls.calls if which == "idm"} == {seen}


def test_resizing_the_noise_equals_the_released_resize_of_the_latent(backbone):
    """At an integer up-scaling (4 → 8 here, 32 → 64 at ModelScope's 256 px), stepping at the video size with the
    resized-back ε gives exactly what the released code gets by stepping at 64×64 and resizing the latent back."""
    from torch.nn.functional import interpolate

    from ivmixed.guidance import guided
    from ivmixed.steps import fold_frames, unfold_frames

    cond = backbone.encode(["a horse"], [""]).idm
    x = backbone.initial_latents(1, 2, 32, 32, torch.Generator("cpu").manual_seed(1))
    schedule = backbone.zigzag_schedule()
    ours = ddim_step(guided(backbone.idm, x, 500, cond, 4.0), x, 500, 480, schedule)

    images = fold_frames(x)
    big = interpolate(images, size=(8, 8), mode="nearest")
    raw = backbone.idm.image_eps.model  # the UNet score model behind the resize
    eps_big = guided(lambda z, t, c: raw(z, t, c), big, 500, cond, 4.0)
    released = unfold_frames(interpolate(ddim_step(eps_big, big, 500, 480, schedule), size=(4, 4), mode="nearest"), 2)
    torch.testing.assert_close(ours, released, atol=1e-6, rtol=1e-6)


def test_the_image_model_reads_its_own_text_encoder(backbone):
    cond = backbone.encode(["a horse"], [""])
    assert cond.idm.shape == (2, 77, 32)  # the SD text encoder's width
    assert cond.vdm.shape == (2, 77, 24)  # ModelScope's own (1024 in the real model)


def test_image_lora_on_modelscope(tiny_models, tiny_modelscope):
    args = dict(program="I-I", seed=5, decode=False, **SMALL)
    plain = ivmixed.load("modelscope", **tiny_modelscope).generate("a horse", **args).latents
    at_0 = ivmixed.load("modelscope", **tiny_modelscope, image_loras=[f"{tiny_models.lora}:0"]).generate("a horse", **args).latents
    at_1 = ivmixed.load("modelscope", **tiny_modelscope, image_loras=[f"{tiny_models.lora}:1"]).generate("a horse", **args).latents
    assert torch.equal(plain, at_0)
    assert (at_1 - plain).abs().max().item() > 1e-3


def test_manifest_names_the_models_and_the_resize(backbone, tmp_path, tiny_modelscope):
    video = backbone.generate("a horse", program="IV-IV", seed=2, steps=2, frames=2, height=32, width=32, progress=False)
    record = video.save(tmp_path / "clip.gif")
    assert record["models"] == {"model": tiny_modelscope["model"], "image_model": tiny_modelscope["image_model"]}
    assert record["image_latent_size"] == [8, 8]
    assert (tmp_path / "clip.gif.json").is_file()
