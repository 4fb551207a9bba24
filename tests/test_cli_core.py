"""The CLI surface of the core: explain, list, exit codes, python -m ivmixed."""

import json
import subprocess
import sys

import pytest

import ivmixed

from ivmixed.cli import main


def test_explain_json_has_the_integer_cost_fields(capsys):
    assert main(["explain", "IV-IV", "--steps", "50", "--frames", "16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["idm_image_evals"] == 3200 and info["vdm_clip_evals"] == 300
    assert info["program"] == "IV-IV" and info["delta"] == 20
    assert [s["letter"] for s in info["steps"][0]["substeps"]] == ["I", "V", "I", "V"]


def test_explain_origin_costs(capsys):
    assert main(["explain", "origin", "--steps", "50", "--frames", "16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["idm_image_evals"], info["vdm_clip_evals"]) == (0, 100)


def test_explain_the_percentage_and_videocrafter2_forms(capsys):
    assert main(["explain", "VV-VV@66.7%", "--steps", "50", "--frames", "16"]) == 0
    text = capsys.readouterr().out
    assert "0 IDM image evaluations, 364 VDM clip evaluations" in text
    assert main(["explain", "IV-IV+VV-VV@i%3=2", "--steps", "50", "--frames", "16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["forms"] == {"IV-IV": 34, "VV-VV": 16}
    assert (info["idm_image_evals"], info["vdm_clip_evals"]) == (2176, 364)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["explain", "IX-IV"], "unknown letter 'X'"),
        (["explain", "IV-IV@0..60", "--steps", "50"], "window 0..60 reaches step 60"),
        (["explain", "IV-IV", "--steps", "1"], "--steps must be an integer >= 2, got 1"),
        (["explain", "IV-IV", "--frames", "0"], "--frames must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ivmixed {argv[0]}: error: ")
    assert message in err
    assert "Traceback" not in err


def test_list_prints_every_builtin(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("toy", "animatediff", "modelscope"):
        assert f"{name:<14} from ivmixed" in out


def test_python_dash_m_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "ivmixed", "explain", "RR-II", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["program"] == "RR-II"
    bad = subprocess.run([sys.executable, "-m", "ivmixed", "explain", "I-R"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "letter 'R' in the denoise phase" in bad.stderr
    assert bad.stderr.rstrip().splitlines()[-2:] == ["    I-R", "      ^"]


def test_nan_during_sampling_is_one_line_and_exit_1(capsys, tmp_path):
    """A backbone whose video model breaks down mid-run: the CLI names the step and sub-step, no traceback."""
    from ivmixed.backbones.toyworld import ToyBackbone

    def broken_world(**options):
        backbone = ToyBackbone(**options)
        good = backbone.vdm

        def vdm(x, t, cond):
            eps = good(x, t, cond)
            return eps * float("nan") if t < 500 else eps

        backbone.vdm = vdm
        return backbone

    ivmixed.register_backbone("nan-world", broken_world, size_multiple=1)
    try:
        code = main(["generate", "--backbone", "nan-world", "--program", "VV-VV", "--steps", "10", "--out", str(tmp_path / "x.npy"), "--quiet"])
    finally:
        ivmixed.unregister_backbone("nan-world")
    err = capsys.readouterr().err
    assert code == 1
    # the toy grid (trailing spacing) is 999, 899, 799, 699, ...: the first evaluation below t = 500 is at step 3
    assert err.startswith("ivmixed generate: failed: NaN/Inf in the latents after step 3, sub-step 2 ('V', back 499->599)")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--zigzag-guidance", "karras(6,2,0)"], "rho must be positive, got 0.0"),
        (["--i-guidance", "linear(nan,2)"], "is not a finite number"),
        (["--guidance", "inf"], "--guidance must be a finite number, got inf"),
        (["--program", "IV-IV@0..60"], "window 0..60 reaches step 60 but there are only 50 steps"),
    ],
)
def test_bad_guidance_and_windows_are_refused_before_any_model_loads(argv, message, capsys):
    # animatediff's weights are not here: reaching the loader would print the missing-weights error instead
    assert main(["generate", "--backbone", "animatediff", "--out", "x.mp4", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "cannot find" not in err


def test_more_steps_than_timesteps_is_refused(capsys, tmp_path):
    assert main(["generate", "--steps", "2000", "--out", str(tmp_path / "x.npy"), "--quiet"]) == 2
    assert "--steps 2000 is more than the 1000 timesteps backbone 'toy' was trained on" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_model_failing_mid_run_exits_1_not_2(capsys, tmp_path):
    """A ValueError from inside a model is a failure of the run, not a usage error."""
    from ivmixed.backbones.toyworld import ToyBackbone

    def failing_world(**options):
        backbone = ToyBackbone(**options)
        good = backbone.idm

        def idm(x, t, cond):
            if t < 300:
                raise ValueError("the image model broke")
            return good(x, t, cond)

        backbone.idm = idm
        return backbone

    ivmixed.register_backbone("failing-world", failing_world, size_multiple=1)
    try:
        code = main(["generate", "--backbone", "failing-world", "--steps", "10", "--out", str(tmp_path / "x.npy"), "--quiet"])
    finally:
        ivmixed.unregister_backbone("failing-world")
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("ivmixed generate: failed: sampling failed at step 5 (t = 499), sub-step 2 ('I', back 299->399): ValueError: the image model broke")
    assert list(tmp_path.iterdir()) == []
