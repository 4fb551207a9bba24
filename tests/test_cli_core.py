"""The CLI surface of the core: explain, list, exit codes, python -m ivmixed."""

import json
import subprocess
import sys

import pytest

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
        (["explain", "IV-IV", "--steps", "1"], "--steps must be >= 2, got 1"),
        (["explain", "IV-IV", "--frames", "0"], "--frames must be >= 1, got 0"),
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
