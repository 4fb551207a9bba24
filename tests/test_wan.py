"""The ``wan`` backbone on tiny random Wan 2.1 components, loaded from folders through the real loading path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.steps import FlowSchedule
from ivmixed.testing.tiny import WAN_SCHEDULER, save_wan

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = dict(frames=5, height=32, width=32, steps=4, progress=False)  # 5 frames -> 2 latent frames of 4×4
V_FORMS = ["V-V", "VV-VV", "RR-VV", "R-V", "VV-VV:nf", "VV-VV@50%"]


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    return save_wan(tmp_path_factory.mktemp("wan") / "wan21", seed=30)


@pytest.fixture(scope="module")
def backbone(wan_folder):
    return ivmixed.load("wan", model=str(wan_folder), device="cpu")


def _stock(folder):
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_listed_with_its_default_models():
    spec = ivmixed.registry.get_spec("wan")
    assert spec.default_models == {"model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"}
    assert spec.size_multiple == 16
    assert "14B" in spec.roles["vdm"]


def test_origin_equals_stock_wan_pipeline(wan_folder, backbone):
    prompts, negative = ["a cat surfing a wave", "a red car at night"], "blurry, static"
    video = backbone.generate(prompts, program="origin", seed=7, guidance=5.0, negative_prompt=negative, **SMALL)
    stock = _stock(wan_folder)
    call = dict(
        negative_prompt=[negative] * 2,
        num_frames=SMALL["frames"],
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=5.0,
    )
    latents = stock(prompts, generator=torch.Generator("cpu").manual_seed(7), output_type="latent", **call).frames
    frames = stock(prompts, generator=torch.Generator("cpu").manual_seed(7), output_type="np", **call).frames
    assert video.latents.shape == latents.shape == (2, 16, 2, 4, 4)  # 5 frames -> 1 + 4/4 latent frames
    latent_gap = (video.latents - latents).abs().max().item()
    frame_gap = float(np.abs(np.asarray(frames) - video.frames).max())
    print(f"wan origin vs stock WanPipeline: latents max |Δ| = {latent_gap:.3g}, frames max |Δ| = {frame_gap:.3g}")
    # the stock pipeline runs cond and uncond as two calls, ivmixed as one batch of two: float32 rounding apart
    assert latent_gap <= 1e-4
    assert frame_gap <= 1e-4
    assert video.frames.shape == (2, 5, 32, 32, 3)
    assert float(latents.std()) > 0.1  # the comparison is not between two near-constant tensors


@pytest.mark.parametrize("program", V_FORMS)
def test_v_forms_run_and_change_the_result(backbone, program):
    origin = backbone.generate("a cat surfing a wave", program="origin", seed=1, decode=False, **SMALL)
    video = backbone.generate("a cat surfing a wave", program=program, seed=1, **SMALL)
    assert np.isfinite(video.frames).all()
    assert (video.latents - origin.latents).abs().max().item() > 1e-3
    assert video.cost == ivmixed.parse(program).cost(num_steps=SMALL["steps"], num_frames=SMALL["frames"]).as_dict()


def test_zigzag_walks_the_flow_schedule_of_the_scheduler(backbone):
    events = []
    backbone.generate("a cat", program="VV-VV", seed=0, decode=False, callback=events.append, **SMALL)
    schedule = backbone.zigzag_schedule()
    assert isinstance(schedule, FlowSchedule) and schedule.shift == WAN_SCHEDULER["flow_shift"]
    first = [e for e in events if e.step == 0]
    # step 0 starts at the pure-noise end (UniPC's first σ is 1 − 1e-6); Δ = 1000 // 4 = 250 on the level axis
    assert [(e.letter, e.direction) for e in first] == [("V", "go"), ("V", "go"), ("V", "back"), ("V", "back"), ("S", "go")]
    assert first[0].t_from == pytest.approx(1000.0, abs=0.01)
    assert first[0].t_to == pytest.approx(750.0, abs=0.01) and first[1].t_to == pytest.approx(500.0, abs=0.01)
    assert first[3].t_to == pytest.approx(first[0].t_from)


def test_flow_shift_option_moves_the_schedule(wan_folder):
    shifted = ivmixed.load("wan", model=str(wan_folder), device="cpu", flow_shift=5.0)
    assert shifted.zigzag_schedule().shift == 5.0
    assert shifted.make_scheduler().config.flow_shift == 5.0


def test_same_seed_same_latents_and_batch_rows_independent(backbone):
    a = backbone.generate(["a cat", "a dog"], program="VV-VV", seed=5, decode=False, **SMALL)
    again = backbone.generate(["a cat", "a dog"], program="VV-VV", seed=5, decode=False, **SMALL)
    other_seed = backbone.generate(["a cat", "a dog"], program="VV-VV", seed=6, decode=False, **SMALL)
    assert torch.equal(a.latents, again.latents)
    assert not torch.equal(a.latents, other_seed.latents)
    start = backbone.initial_latents(2, 5, 32, 32, torch.Generator("cpu").manual_seed(5))
    both = backbone.generate(["a cat", "a dog"], program="VV-VV", latents=start, decode=False, **SMALL)
    alone = backbone.generate("a dog", program="VV-VV", latents=start[1:], decode=False, **SMALL)
    torch.testing.assert_close(both.latents[1:], alone.latents, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("offload", ["model", "group"])
def test_outputs_do_not_change_with_offloading(wan_folder, backbone, offload):
    """diffusers' offload hooks wrap every module call; on the CPU they move nothing, so outputs must stay identical."""
    plain = backbone.generate("a cat", program="VV-VV", seed=2, **SMALL)
    offloaded = ivmixed.load("wan", model=str(wan_folder), device="cpu", offload=offload)
    if offload == "model":
        assert any(hasattr(m, "_hf_hook") for m in offloaded.pipe.transformer.modules())
    else:
        assert getattr(offloaded.pipe.transformer, "_diffusers_hook", None) is not None
    video = offloaded.generate("a cat", program="VV-VV", seed=2, **SMALL)
    assert torch.equal(video.latents, plain.latents)
    assert np.array_equal(video.frames, plain.frames)


def test_refusals(wan_folder, backbone, tmp_path):
    with pytest.raises(ValueError, match=r"--frames 6: Wan's VAE packs 4 frames .* 4k \+ 1 .*try 5 or 9"):
        backbone.generate("a cat", program="origin", **{**SMALL, "frames": 6})
    with pytest.raises(ValueError, match="multiple of 16"):
        backbone.generate("a cat", program="origin", **{**SMALL, "height": 40})
    with pytest.raises(ValueError, match="uses the image model .* no image model"):
        backbone.generate("a cat", program="IV-IV", **SMALL)
    with pytest.raises(ValueError, match="sizes 1.3B, 14B"):
        ivmixed.load("wan", size="7B", device="cpu")
    with pytest.raises(ValueError, match="offload='disk'"):
        ivmixed.load("wan", model=str(wan_folder), offload="disk", device="cpu")
    # a model folder whose scheduler is not flow matching is refused from its config, before weights load
    import shutil

    other = tmp_path / "not_flow"
    shutil.copytree(wan_folder, other)
    config_file = other / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config.update(_class_name="DDIMScheduler", prediction_type="epsilon", use_flow_sigmas=False)
    config_file.write_text(json.dumps(config))
    with pytest.raises(ivmixed.backbones.base.IncompatibleModels, match="not a flow-matching scheduler"):
        ivmixed.load("wan", model=str(other), device="cpu")


def test_missing_weights_name_the_model():
    with pytest.raises(Exception) as info:
        ivmixed.load("wan", model="ivmixed-tests/absent-wan", device="cpu")
    assert "ivmixed-tests/absent-wan" in str(info.value)
    with pytest.raises(Exception) as info:
        ivmixed.load("wan", size="14B", device="cpu")
    assert "Wan-AI/Wan2.1-T2V-14B-Diffusers" in str(info.value)


def test_explain_prints_the_flow_matching_sub_step_plan(capsys):
    from ivmixed.cli import main

    assert main(["explain", "VV-VV", "--backbone", "wan", "--steps", "50", "--frames", "81"]) == 0
    text = capsys.readouterr().out
    assert "rectified flow" in text and "UniPCMultistepScheduler" in text
    assert "frames 81 (21 latent frames), sub-step delta = 1000 // 50 = 20 on the level axis tau" in text
    assert "sigma(tau) = 3*u / (1 + 2*u)" in text
    # step 1 of the grid: level 980.02 (σ 0.9933, UniPC's grid), two V denoise moves of Δ = 20, two inversions back
    assert "980.02 -> 960.02  0.9933 -> 0.9863   993.3 -> 986.3" in text
    assert "the standard step at timestep 993: sigma 0.9933 -> 0.9863" in text

    assert main(["explain", "VV-VV", "--backbone", "wan", "--steps", "10", "--frames", "81", "--json", "--show-steps", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["delta"] == 100 and info["flow_shift"] == 3.0 and info["latent_frames"] == 21
    subs = info["steps"][0]["substeps"]
    assert [round(s["t_to"]) for s in subs] == [900, 800, 900, 1000]
    assert subs[0]["sigma_to"] == pytest.approx(3 * 0.9 / (1 + 2 * 0.9), abs=1e-4)
    assert info["cost"] == ivmixed.parse("VV-VV").cost(num_steps=10, num_frames=81).as_dict()


def test_explain_reads_the_model_folders_scheduler_and_shift(wan_folder, capsys):
    from ivmixed.backbones._wan_impl import WanBackbone

    info, text = WanBackbone.explain_plan(ivmixed.parse("V-V"), num_steps=4, num_frames=5, model=str(wan_folder), flow_shift=5.0)
    assert info["flow_shift"] == 5.0 and f"scheduler config of {wan_folder}" in text
    assert info["steps"][1]["sigma"] == pytest.approx(5 * 0.75025 / (1 + 4 * 0.75025), abs=1e-4)


# -- the experimental image model: Qwen-Image on Wan's latent space --------------------------------------------


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    from ivmixed.testing.tiny import save_qwen_image

    return save_qwen_image(tmp_path_factory.mktemp("qwen") / "qwen_image", seed=40)


@pytest.fixture(scope="module")
def mixed(wan_folder, qwen_folder):
    return ivmixed.load("wan", model=str(wan_folder), image_model=str(qwen_folder), device="cpu")


def test_image_model_score_equals_a_stock_qwen_image_step(qwen_folder, mixed):
    """One Euler step of the stock QwenImagePipeline from σ = 1 (no CFG) is x − v: our adapter must give that v."""
    from diffusers import QwenImagePipeline

    stock = QwenImagePipeline.from_pretrained(str(qwen_folder))
    stock.set_progress_bar_config(disable=True)
    x = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    packed = QwenImagePipeline._pack_latents(x, 1, 16, 4, 4)
    out = stock("a cat", height=32, width=32, num_inference_steps=1, latents=packed, output_type="latent", true_cfg_scale=1.0).images
    expected = QwenImagePipeline._unpack_latents(out, 32, 32, 8)[:, :, 0]
    embeds, mask = mixed.image.encode(["a cat"], ["a cat"])
    velocity = mixed.idm.image_eps(x, 1000.0, (embeds[1:], None if mask is None else mask[1:]))
    gap = (x - velocity - expected).abs().max().item()
    print(f"Qwen-Image adapter vs stock QwenImagePipeline step: max |Δ| = {gap:.3g}")
    assert gap <= 1e-5, gap
    assert velocity.abs().max().item() > 1e-2


@pytest.mark.parametrize("program", ["I-I", "IV-IV", "RR-II"])
def test_i_forms_run_with_the_image_model(mixed, program, monkeypatch):
    from ivmixed.testing import CountingScoreModel

    origin = mixed.generate("a cat", program="origin", seed=1, decode=False, **SMALL)
    idm, vdm = CountingScoreModel(mixed.idm, per_frame=True), CountingScoreModel(mixed.vdm, per_frame=False)
    monkeypatch.setattr(mixed, "idm", idm)
    monkeypatch.setattr(mixed, "vdm", vdm)
    video = mixed.generate(["a cat", "a dog"], program=program, seed=1, negative_prompt="static", **SMALL)
    assert np.isfinite(video.frames).all()
    assert (video.latents[:1] - origin.latents).abs().max().item() > 1e-3
    # the image model sees the 2 latent frames of a 5-frame clip; the cost is per video
    assert video.settings["latent_frames"] == 2
    assert video.cost == {"idm_image_evals": idm.rows // 2, "vdm_clip_evals": vdm.rows // 2}
    assert video.cost["idm_image_evals"] > 0


def test_pair_check_extends_to_latent_normalisation(wan_folder, qwen_folder, tmp_path):
    import shutil

    other = tmp_path / "qwen_other_std"
    shutil.copytree(qwen_folder, other)
    vae_file = other / "vae" / "config.json"
    vae = json.loads(vae_file.read_text())
    vae["latents_std"] = [value * 1.5 if i == 3 else value for i, value in enumerate(vae["latents_std"])]
    vae_file.write_text(json.dumps(vae))
    with pytest.raises(ivmixed.backbones.base.IncompatibleModels, match=r"normalise latents differently \(latents_std: channel 3 differs"):
        ivmixed.load("wan", model=str(wan_folder), image_model=str(other), device="cpu")
    with pytest.raises(ivmixed.backbones.base.IncompatibleModels, match="is a WanPipeline, not a QwenImagePipeline"):
        ivmixed.load("wan", model=str(wan_folder), image_model=str(wan_folder), device="cpu")
