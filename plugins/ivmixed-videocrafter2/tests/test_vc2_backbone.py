"""The videocrafter2 plugin backbone: registry, conformance suite, stock equivalence, fps, the released recipe."""

import json

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.testing import BackboneContract, MissingWeightsContract


class TestContract(BackboneContract, MissingWeightsContract):
    name = "videocrafter2"
    size = dict(frames=2, height=32, width=32, steps=3)
    prompts = ("a red car", "a blue boat")

    @pytest.fixture(scope="class")
    @classmethod
    def options(cls, tiny_videocrafter2):
        return tiny_videocrafter2

    @pytest.fixture(scope="class")
    @classmethod
    def missing_options(cls):
        ids = ["someone/videocrafter2-not-here", "someone/zeroscope-not-here"]
        return {"model": ids[0], "components": ids[1], "image_model": "/no/such/folder"}, ids + ["/no/such/folder"]


@pytest.fixture(scope="module")
def backbone(tiny_videocrafter2):
    return ivmixed.load("videocrafter2", **tiny_videocrafter2)


def test_listed_from_the_plugin_distribution():
    from ivmixed.commands.list import collect

    rows = {r["name"]: r for r in collect()}
    assert rows["videocrafter2"]["distribution"] == "ivmixed-videocrafter2"
    assert rows["videocrafter2"]["status"] == "ok"
    assert set(rows["videocrafter2"]["default_models"]) == {"model", "components", "image_model"}


def test_origin_equals_the_stock_pipeline_with_the_videocrafter2_unet(backbone):
    """origin = diffusers' TextToVideoSDPipeline with our UNet (fps 24 by default) and SDE-DPM-Solver++ standard steps."""
    from diffusers import TextToVideoSDPipeline

    pipe = TextToVideoSDPipeline(
        vae=backbone.vae, text_encoder=backbone.text_encoder, tokenizer=backbone.tokenizer, unet=backbone.unet,
        scheduler=backbone.make_scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_frames=2, height=32, width=32, num_inference_steps=4, guidance_scale=9.0)
    stock = pipe("a red car", generator=torch.Generator("cpu").manual_seed(7), output_type="np", **kw).frames[0]
    ours = backbone.generate("a red car", program="origin", seed=7, steps=4, frames=2, height=32, width=32, progress=False)
    assert ours.frames[0].shape == stock.shape
    assert np.abs(ours.frames[0] - stock).max() <= 1e-4


def test_the_fps_condition_changes_the_output(tiny_videocrafter2):
    at24 = ivmixed.load("videocrafter2", **tiny_videocrafter2)
    at8 = ivmixed.load("videocrafter2", **tiny_videocrafter2, fps=8)
    kw = dict(program="origin", seed=1, steps=3, frames=2, height=32, width=32, progress=False, decode=False)
    a, b = at24.generate("a red car", **kw).latents, at8.generate("a red car", **kw).latents
    assert (a - b).abs().max() > 1e-4
    assert at8.describe()["fps_condition"] == 8


def test_default_program_is_the_released_recipe(backbone):
    events = []
    video = backbone.generate("a red car", steps=6, frames=2, height=32, width=32, progress=False, decode=False, callback=events.append)
    assert str(video.program) == "IV-IV+VV-VV@i%3=2"
    assert video.settings["guidance"] == 9.0
    letters = {i: "".join(e.letter for e in events if e.step == i) for i in range(6)}
    assert letters == {0: "IVIVS", 1: "IVIVS", 2: "VVVVS", 3: "IVIVS", 4: "IVIVS", 5: "VVVVS"}
    # the grid is DPM-Solver's; the zigzag moves by Δ = 1000 // 6 = 166 whatever the grid spacing
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(6)
    t0, t1 = (int(t) for t in scheduler.timesteps[:2])
    first = [(e.letter, e.direction, e.t_from, e.t_to, e.scale) for e in events if e.step == 0]
    assert first == [("I", "go", t0, t0 - 166, 4.0), ("V", "go", t0 - 166, t0 - 332, 4.0), ("I", "back", t0 - 332, t0 - 166, -4.0),
                     ("V", "back", t0 - 166, t0, -4.0), ("S", "go", t0, t1, 9.0)]
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler" and scheduler.config.algorithm_type == "sde-dpmsolver++"


def test_reference_preset(backbone):
    events = []
    video = backbone.generate("a red car", preset="reference", steps=3, frames=2, height=32, width=32, progress=False, decode=False, callback=events.append)
    assert str(video.program) == "IV-IV+VV-VV@i%3=2" and video.settings["guidance"] == 9.0
    # the released float32 Karras ramp value, not 4.0 (the default program keeps exact 4.0)
    assert {abs(e.scale) for e in events if e.letter != "S"} == {4.000000953674316}


@pytest.mark.parametrize("fps", [0, -3, 12.5, "abc", 10**9])
def test_bad_fps_is_refused_before_loading(fps):
    # the plugin's option table checks it (before: the backbone's own check, "must be a positive number")
    with pytest.raises(ValueError, match=r"backbone 'videocrafter2': option fps=.*: expected an integer, 1 <= fps <= 1000"):
        ivmixed.load("videocrafter2", fps=fps)


def test_the_options_are_listed(capsys):
    from ivmixed.cli import main

    assert main(["list", "--options", "videocrafter2"]) == 0
    out = capsys.readouterr().out
    for name in ("components", "fps", "components_revision", "components_variant", "decode_chunk_size"):
        assert f"\n  {name} " in out
    assert "refs/pr/46 for the default id" in out


def test_generate_cli_with_the_plugin(tiny_videocrafter2, tmp_path, capsys):
    from ivmixed.cli import main

    out = tmp_path / "clip.npy"
    argv = ["generate", "--backbone", "videocrafter2", "--prompt", "a red car", "--steps", "3", "--frames", "2",
            "--height", "32", "--width", "32", "--out", str(out), "--json", "--model", tiny_videocrafter2["model"],
            "--image-model", tiny_videocrafter2["image_model"], "-o", f"components={tiny_videocrafter2['components']}",
            "--device", "cpu"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["program"] == "IV-IV+VV-VV@i%3=2" and record["fps_condition"] == 24
    assert np.load(out).shape == (2, 32, 32, 3)
    assert record["cost"] == ivmixed.parse("IV-IV+VV-VV@i%3=2").cost(num_steps=3, num_frames=2).as_dict()
