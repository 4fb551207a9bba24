"""Paired comparisons: each tile is exactly the single generate run of its program; labels under the tiles."""

import json

import numpy as np
import pytest

import ivmixed
from ivmixed.cli import main
from ivmixed.compare import _wrap, compare, tile_with_labels

SETTINGS = dict(steps=6)
PROGRAMS = ["origin", "IV-IV", "IV-IV+VV-VV@i%3=2"]


@pytest.fixture(scope="module")
def toy():
    return ivmixed.load("toy")


@pytest.fixture(scope="module")
def comparison(toy):
    return compare(toy, "a dark blob moving up", PROGRAMS, seed=11, **SETTINGS)


def test_tiles_equal_the_frames_of_single_generate_runs(toy, comparison):
    tiled, layout = comparison.tiled()
    assert layout.scale == 8 and layout.height == layout.width == 128  # 16 px toy frames, upscaled to be seen
    for i, program in enumerate(PROGRAMS):
        single = toy.generate("a dark blob moving up", program=program, seed=11, progress=False, **SETTINGS).frames[0]
        np.testing.assert_array_equal(comparison.videos[i].frames[0], single)
        np.testing.assert_array_equal(comparison.tile(i, tiled, layout), single)
        x = layout.x[i]
        block = tiled[:, layout.gap : layout.gap + layout.height, x : x + layout.width]
        np.testing.assert_array_equal(block, single.repeat(8, axis=1).repeat(8, axis=2))  # nearest: values kept


def test_every_program_starts_from_the_same_noise(toy, monkeypatch):
    drawn = []
    real = toy.initial_latents

    def recording(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(toy, "initial_latents", recording)
    result = compare(toy, "a dark blob moving up", PROGRAMS, seed=11, steps=3)
    assert len(drawn) == 3 and all(bool((x == drawn[0]).all()) for x in drawn)
    assert [v.seed for v in result.videos] == [11, 11, 11]
    assert [str(v.program) for v in result.videos] == PROGRAMS


def test_the_program_text_is_drawn_under_each_tile(comparison):
    tiled, layout = comparison.tiled()
    top = layout.gap + layout.height + layout.gap
    labels = [tiled[0, top:, x : x + layout.width] for x in layout.x]
    for label in labels:
        assert label.min() < 0.3 and label.max() == 1.0  # dark text on white
    assert not np.array_equal(labels[0], labels[1])
    plain, _ = tile_with_labels(comparison.frames(), ["", "", ""])
    assert plain[0, top:].min() == 1.0  # without text the strip is blank


def test_long_program_text_wraps_between_clauses():
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap("IV-IV+VV-VV@i%3=2+RR-II@0..10", 100, draw, font)
    assert len(lines) > 1 and "".join(lines) == "IV-IV+VV-VV@i%3=2+RR-II@0..10"
    assert lines[0].endswith("+")
    assert all(draw.textlength(line, font=font) <= 100 for line in lines)


def test_save_writes_the_clip_and_a_manifest(comparison, tmp_path):
    record = comparison.save(tmp_path / "c.npy")
    clip = np.load(tmp_path / "c.npy")
    assert clip.shape == comparison.tiled()[0].shape
    manifest = json.loads((tmp_path / "c.npy.json").read_text())
    assert manifest["programs"] == PROGRAMS and manifest["seed"] == 11 and len(manifest["videos"]) == 3
    assert manifest["layout"] == record["layout"]
    comparison.save(tmp_path / "c.gif")
    assert (tmp_path / "c.gif").stat().st_size > 0


def test_cli_compare_matches_the_python_api(comparison, tmp_path, capsys):
    out = tmp_path / "cmp.npy"
    argv = ["compare", "--programs", ",".join(PROGRAMS), "--prompt", "a dark blob moving up", "--seed", "11", "--steps", "6", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    np.testing.assert_array_equal(np.load(out), comparison.tiled()[0])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "'a dark blob moving up', seed 11"
    assert lines[1].split()[0] == "origin" and lines[2].split()[0] == "IV-IV"


def test_cli_compare_defaults_to_origin_and_the_backbones_program(tmp_path, capsys):
    out = tmp_path / "d.npy"
    assert main(["compare", "--steps", "3", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["programs"] == ["origin", "IV-IV"] and record["prompt"] == "a bright blob moving right"


def test_bad_requests(toy, tmp_path, capsys):
    with pytest.raises(ValueError, match="--programs: a program is listed twice in IV-IV, origin, IV-IV"):
        compare(toy, "a blob", ["IV-IV", "origin", "IV-IV"])
    with pytest.raises(ValueError, match="compare needs one non-empty prompt"):
        compare(toy, " ", ["origin"])
    with pytest.raises(TypeError, match="does not take latents"):
        compare(toy, "a bright blob moving right", ["origin"], latents=None)
    assert main(["compare", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown file type '.png'" in capsys.readouterr().err
