"""Sweeps: the Python API (paired seeds, mean ± 95% interval, cost) and ``ivmixed sweep`` (table, JSON, plot, errors)."""

import json
import math

import pytest

from ivmixed import parse
from ivmixed.backbones.toyworld import ToyBackbone
from ivmixed.cli import main
from ivmixed.sweep import PAPER_FORMS, format_table, summarise, sweep, t_quantile_975

FAST = ["--steps", "6", "--frames", "4", "--quiet"]
METRICS = ("frame_error", "coherence", "video_error", "prompt_accuracy")


@pytest.fixture(scope="module")
def toy():
    return ToyBackbone()


def test_summarise_is_mean_and_student_t_interval():
    mean, ci = summarise([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert summarise([5.0]) == (5.0, None)
    assert summarise([None, None]) == (None, None)
    assert summarise([1.0, None, 3.0])[0] == 2.0
    assert t_quantile_975(1) == 12.706 and t_quantile_975(30) == 2.042 and t_quantile_975(200) == 1.96


def test_sweep_rows_hold_cost_and_intervals(toy):
    seen = []
    rows = sweep(toy, ["origin", "IV-IV", parse("RR-II:nf")], 3, steps=6, frames=4, progress=False, on_run=seen.append)
    assert [r["program"] for r in rows] == ["origin", "IV-IV", "RR-II:nf"]
    assert [(s["program"], s["seed"]) for s in seen][:3] == [("origin", 0), ("origin", 1), ("origin", 2)]
    for r in rows:
        assert r["runs"] == 3 and r["clips"] == 3 * len(toy.prompts)
        assert {k: r[k] for k in ("idm_image_evals", "vdm_clip_evals")} == parse(r["program"]).cost(num_steps=6, num_frames=4).as_dict()
        for m in METRICS:
            runs = [s["metrics"][m] for s in seen if s["program"] == r["program"]]
            mean, ci = summarise(runs)
            assert r[m] == pytest.approx(mean, abs=1e-6) and r[f"{m}_ci95"] == pytest.approx(ci, abs=1e-6)
            assert r[f"{m}_ci95"] >= 0


def test_every_program_sees_the_same_seeds(toy):
    once = sweep(toy, ["origin", "V-V"], [5, 9], steps=6, frames=4, progress=False)
    again = sweep(toy, ["V-V", "origin"], [5, 9], steps=6, frames=4, progress=False)
    assert once[0] == {**again[1], "seconds_per_run": once[0]["seconds_per_run"]}
    assert once[1]["frame_error"] == again[0]["frame_error"]


def test_sweep_refuses_what_it_sets_itself(toy):
    with pytest.raises(TypeError, match="sets 'seed' itself"):
        sweep(toy, ["origin"], 1, seed=3)
    with pytest.raises(ValueError, match="at least one seed"):
        sweep(toy, ["origin"], 0)


def test_format_table_shows_cost_and_mean_plus_minus_interval(toy):
    rows = sweep(toy, ["origin", "I-I"], 2, steps=6, frames=4, progress=False)
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["program", "IDM", "img"] and "frame_error" in lines[0]
    assert lines[2].startswith("origin") and lines[3].startswith("I-I") and " ± " in lines[3]
    assert lines[-1] == "mean ± 95% interval over 2 seeds (Student t)"
    md = format_table(rows, markdown=True).splitlines()
    assert md[0].startswith("| program | IDM img evals | VDM clip evals | frame_error") and md[1].startswith("|---|")


def test_cli_json_lists_one_object_per_program(capsys):
    assert main(["sweep", "--programs", "origin,IV-IV,VV-VV@66.7%", "--seeds", "2", "--json", *FAST]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["program"] for r in rows] == ["origin", "IV-IV", "VV-VV@66.7%"]
    for r in rows:
        for key in ("program", "frame_error", "coherence", "video_error", "prompt_accuracy", "idm_image_evals", "vdm_clip_evals"):
            assert key in r
        assert r["frame_error_ci95"] is not None and r["runs"] == 2
    assert rows[1]["idm_image_evals"] == 2 * 2 * 4 * 6 and rows[1]["vdm_clip_evals"] == (2 + 1) * 2 * 6


def test_cli_table_and_plot(tmp_path, capsys):
    plot = tmp_path / "fig" / "forms.png"
    assert main(["sweep", "--programs", "origin,I-I,IV-IV:nf", "--seeds", "2", "--plot", str(plot), "-o", "world=large-mismatch", *FAST]) == 0
    captured = capsys.readouterr()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["origin", "I-I", "IV-IV:nf"]
    assert f"wrote {plot}" in captured.err


def test_cli_default_programs_are_the_papers_forms():
    from ivmixed.cli import build_parser

    args = build_parser().parse_args(["sweep"])
    assert args.programs == ",".join(PAPER_FORMS) and args.seeds == 4 and args.backbone == "toy"
    assert PAPER_FORMS == ("origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--programs", "origin,IX-IV"], "unknown letter 'X'"),
        (["--programs", "origin,,IV-IV"], "empty item"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--plot", "fig.jpg"], "--plot fig.jpg: use a file name ending in .png, .pdf, .svg"),
        (["--prompt", "a blob moving sideways"], "does not know the word(s) 'sideways'"),
        (["--backbone", "nope"], "unknown backbone 'nope'"),
    ],
)
def test_cli_errors_exit_2(capsys, argv, message):
    programs = [] if "--programs" in argv else ["--programs", "origin"]
    assert main(["sweep", *argv, *programs, *FAST]) == 2
    assert message in capsys.readouterr().err
