"""``ivmixed generate`` on the toy world: files written, manifest fields, exit codes, the vocabulary error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ivmixed import parse
from ivmixed.cli import main

FAST = ["--steps", "8", "--quiet"]


def manifest_of(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_default_generate_writes_a_gif_and_a_manifest_with_metrics(tmp_path, capsys):
    out = tmp_path / "blob.gif"
    assert main(["generate", "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    import imageio.v2 as imageio

    frames = imageio.mimread(out)
    assert len(frames) == 8 and min(frames[0].shape[:2]) >= 128  # 16 px upscaled so a person can see it
    m = manifest_of(out)
    assert m["program"] == "IV-IV" and m["seed"] == 0 and m["backbone"] == "toy" and m["world"] == "default"
    assert m["prompts"] == ["a bright blob moving right"]
    assert m["settings"]["steps"] == 50 and m["settings"]["frames"] == 8 and m["settings"]["guidance"] == 7.5
    assert m["cost"] == parse("IV-IV").cost(num_steps=50, num_frames=8).as_dict() == {"idm_image_evals": 1600, "vdm_clip_evals": 300}
    assert set(m["metrics"]) == {"frame_error", "coherence", "video_error", "prompt_accuracy"}
    assert 0 < m["metrics"]["frame_error"] < 0.1 and m["metrics"]["prompt_accuracy"] == 1.0
    assert m["timings"]["total_s"] > 0 and m["world_parameters"]["mismatch"] == 0.5
    assert m["output"] == str(out) and "torch" in m["versions"]
    text = capsys.readouterr().out
    assert text.startswith("IV-IV | seed 0 | cost 1600 IDM image evals, 300 VDM clip evals") and "frame_error" in text


def test_npy_by_suffix_with_program_seed_and_world_options(tmp_path):
    out = tmp_path / "clip.npy"
    argv = ["generate", "--out", str(out), "--program", "RR-II:nf", "--seed", "7", "--prompt", "a dark blob moving up",
            "-o", "world=large-mismatch", "-o", "spread=0.08", "--frames", "5", "--height", "12", *FAST]
    assert main(argv) == 0
    frames = np.load(out)
    assert frames.shape == (5, 12, 16, 3) and frames.dtype == np.float32 and 0 <= frames.min() and frames.max() <= 1
    m = manifest_of(out)
    assert m["program"] == "RR-II:nf" and m["seed"] == 7 and m["world"] == "large-mismatch"
    assert m["world_parameters"]["spread"] == 0.08 and m["world_parameters"]["vdm_blob_width"] == 2.0
    assert m["cost"] == parse("RR-II:nf").cost(num_steps=8, num_frames=5).as_dict()


def test_same_seed_same_frames_other_seed_other_frames(tmp_path):
    paths = [tmp_path / f"{name}.npy" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (3, 3, 4)):
        assert main(["generate", "--out", str(path), "--seed", str(seed), *FAST]) == 0
    a, b, c = (np.load(p) for p in paths)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_mp4_by_suffix(tmp_path):
    out = tmp_path / "clip.mp4"
    assert main(["generate", "--out", str(out), *FAST]) == 0
    assert out.stat().st_size > 0 and b"ftyp" in out.read_bytes()[:64]
    assert manifest_of(out)["metrics"]["prompt_accuracy"] in (0.0, 1.0)


def test_json_prints_the_manifest(tmp_path, capsys):
    out = tmp_path / "clip.gif"
    assert main(["generate", "--out", str(out), "--json", "--prompt", "a bright blob moving left", "--num-videos", "2", *FAST]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == manifest_of(out)
    assert printed["prompts"] == ["a bright blob moving left"] * 2 and printed["metrics"]["coherence"] is not None


def test_unknown_word_exits_2_with_the_vocabulary(tmp_path, capsys):
    out = tmp_path / "clip.gif"
    assert main(["generate", "--out", str(out), "--prompt", "a purple blob moving left", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivmixed generate: error: the toy world does not know the word(s) 'purple'")
    assert "appearances: bright, dark; directions: left, right, up, down" in err
    assert not out.exists() and not out.with_name(out.name + ".json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "clip.avi"], "unknown file type '.avi'"),
        (["--steps", "1"], "--steps must be an integer >= 2"),
        (["--frames", "0"], "--frames must be an integer >= 1"),
        (["--program", "IX-IV"], "unknown letter 'X'"),
        (["-o", "world=huge"], "unknown toy world 'huge'"),
        (["-o", "blob_size=2"], "does not take option(s) blob_size"),
    ],
)
def test_bad_requests_exit_2_before_writing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    argv = ["generate", *argv] if "--out" in argv else ["generate", "--out", "clip.gif", *argv]
    assert main([*argv, "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_python_m_ivmixed_generate_smoke(tmp_path):
    out = tmp_path / "smoke.gif"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "ivmixed", "generate", "--out", str(out), "--steps", "5", "--quiet"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and manifest_of(out)["metrics"]["frame_error"] > 0
    assert f"wrote {out}" in proc.stderr
