"""Grid-aligned zigzag sub-steps (``substeps="grid"``): the plans on real diffusers grids, the interpreter, the
toy backbone end to end, explain, the CLI and batch; and the default Δ = T // N plan left as it was."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler, LCMScheduler

import ivmixed
from ivmixed import parse
from ivmixed.cli import main
from ivmixed.guidance import guided
from ivmixed.program import LETTERS, SUBSTEP_SIZES, Direction, Primitive, Role, check_substeps, explain, format_explain
from ivmixed.sampler import run_program
from ivmixed.schedules import GuidanceTable
from ivmixed.steps import FlowSchedule, NoiseSchedule, add_noise, deterministic_step

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
FORMS = ["IV-IV", "RR-II", "VV-VV:nf", "IV-IV:ad", "RIV-VII", "R-V:nf", "IV-IV+VV-VV@i%3=2"]
PROMPT = "a bright blob moving right"


def grid_of(scheduler, n):
    scheduler.set_timesteps(n)
    return NoiseSchedule.from_scheduler(scheduler).grid_levels(scheduler)


def lightning():  # the scheduler AnimateDiff-Lightning is meant for: Euler, trailing spacing, linear betas
    return EulerDiscreteScheduler(beta_schedule="linear", timestep_spacing="trailing")


def expected_levels(grid, step, k, order, top=999):
    """The chain of the grid form, written out: t_i, t_{i+1}, … (0 past the end), or t_i, t_{i−1}, … (T−1 above)."""
    if order == "noise-first":
        return [grid[step - j] if step - j >= 0 else top for j in range(k + 1)]
    return [grid[step + j] if step + j < len(grid) else 0 for j in range(k + 1)]


# --------------------------------------------------------------------------------------------------
# Plans on real grids
# --------------------------------------------------------------------------------------------------


def test_trailing_four_step_grid_levels():
    grid = grid_of(lightning(), 4)
    assert grid == [999, 749, 499, 249]
    program = parse("IV-IV")
    plan = [(s.letter, s.direction, s.t_from, s.t_to) for s in program.substeps(0, 999, 4, grid=grid)]
    assert plan == [("I", "go", 999, 749), ("V", "go", 749, 499), ("I", "back", 499, 749), ("V", "back", 749, 999)]
    last = [(s.t_from, s.t_to) for s in program.substeps(3, 249, 4, grid=grid)]
    assert last == [(249, 0), (0, 0), (0, 0), (0, 249)]  # clamped at 0 past the last grid timestep, as Δ clamps
    # on this grid Δ = 1000 // 4 = 250 is the grid spacing, so the two plans agree
    for step, t in enumerate(grid):
        assert program.substeps(step, t, 4, grid=grid) == program.substeps(step, t, 4)


@pytest.mark.parametrize(
    "name, scheduler, n, grid",
    [
        ("trailing", DDIMScheduler(**SD, timestep_spacing="trailing"), 4, [999, 749, 499, 249]),
        ("leading + offset 1", DDIMScheduler(**SD, timestep_spacing="leading", steps_offset=1), 7, [853, 711, 569, 427, 285, 143, 1]),
        ("trailing", DDIMScheduler(**SD, timestep_spacing="trailing"), 7, [999, 856, 713, 570, 428, 285, 142]),
        ("linspace", DDIMScheduler(**SD, timestep_spacing="linspace"), 7, [999, 832, 666, 500, 333, 166, 0]),
        ("LCM", LCMScheduler(**SD), 4, [999, 759, 499, 259]),
    ],
)
@pytest.mark.parametrize("text", FORMS)
def test_every_grid_level_is_a_grid_timestep(name, scheduler, n, grid, text):
    assert grid_of(scheduler, n) == grid
    program = parse(text)
    on_grid = set(grid) | {0, 999}
    for step, t in enumerate(grid):
        plan = program.substeps(step, t, n, grid=grid)
        clause = program.clause_at(step, n)
        assert len(plan) == 2 * (0 if clause is None else clause.form.length)
        for sub in plan:
            assert sub.t_from in on_grid and sub.t_to in on_grid, (step, sub)
            assert (sub.t_to <= sub.t_from) if sub.direction == Direction.GO else (sub.t_to >= sub.t_from)
        if plan and clause.order != "animatediff-swap":  # the swap breaks the chain on purpose
            k = clause.form.length
            levels = expected_levels(grid, step, k, clause.order)
            assert [s.t_from for s in plan[:k]] == levels[:k] and [s.t_to for s in plan[:k]] == levels[1:]
            assert [s.t_to for s in plan[k:]] == levels[:k][::-1]  # back up (or down) the same levels to t


def test_the_delta_plan_falls_between_grid_timesteps_where_the_grid_form_does_not():
    grid = grid_of(DDIMScheduler(**SD, timestep_spacing="trailing"), 7)
    delta_levels = {s.t_to for s in parse("IV-IV").substeps(1, 856, 7)}
    grid_levels = {s.t_to for s in parse("IV-IV").substeps(1, 856, 7, grid=grid)}
    assert delta_levels == {856 - 142, 856 - 284, 856}  # Δ = 142: 714 and 572 lie between 713 and 570
    assert grid_levels == {713, 570, 856}


def test_the_delta_plan_is_the_released_formula():
    """The default plan is L_j = max(0, t − jΔ) (denoise-first) and U_j = min(T − 1, t + jΔ) (noise-first)."""
    for n in (4, 7, 50):
        delta = 1000 // n
        grid = grid_of(DDIMScheduler(**SD, timestep_spacing="trailing"), n)
        for step, t in enumerate(grid):
            down = [max(0, t - j * delta) for j in range(3)]
            up = [min(999, t + j * delta) for j in range(3)]
            assert [(s.t_from, s.t_to) for s in parse("IV-IV").substeps(step, t, n)] == [
                (down[0], down[1]), (down[1], down[2]), (down[2], down[1]), (down[1], down[0])
            ]
            assert [(s.t_from, s.t_to) for s in parse("RV-IV:nf").substeps(step, t, n)] == [
                (up[0], up[1]), (up[1], up[2]), (up[2], up[1]), (up[1], up[0])
            ]


def test_a_bad_grid_is_refused():
    program = parse("IV-IV")
    with pytest.raises(ValueError, match=r"grid must hold the 4 timesteps of the standard scheduler, one per step; got 3 values"):
        program.substeps(0, 999, 4, grid=[999, 749, 499])
    with pytest.raises(ValueError, match=r"t = 998 is not the grid timestep of step 0 \(999\); give t = grid\[step\]"):
        program.substeps(0, 998, 4, grid=[999, 749, 499, 249])
    with pytest.raises(ValueError, match="grid timesteps must not increase, got 749 at step 1 and 800 at step 2"):
        program.substeps(1, 749, 4, grid=[999, 749, 800, 249])
    with pytest.raises(ValueError, match=r"grid timestep 1 must be an int in 0..999, got 1000"):
        program.substeps(0, 999, 4, grid=[999, 1000, 499, 249])


def test_check_substeps():
    assert SUBSTEP_SIZES == ("delta", "grid")
    assert [check_substeps(v) for v in SUBSTEP_SIZES] == ["delta", "grid"]
    for bad in ("Grid", "", None, 4):
        with pytest.raises(ValueError, match=r"substeps must be 'delta' \(each sub-step moves Δ = T // N, the default\) or 'grid'"):
            check_substeps(bad)


def test_flow_schedule_grid_form_walks_the_grid_levels():
    schedule = FlowSchedule(num_train_timesteps=1000, shift=3.0)
    grid = [1000.0, 800.5, 600.25, 400.0]
    plan = schedule.substeps(parse("IV-IV"), 1, 800.5, 4, grid=grid)
    assert [(s.t_from, s.t_to) for s in plan] == [(800.5, 600.25), (600.25, 400.0), (400.0, 600.25), (600.25, 800.5)]
    top = schedule.substeps(parse("VV-VV:nf"), 0, 1000.0, 4, grid=grid)
    assert [(s.t_from, s.t_to) for s in top] == [(1000.0, 1000.0)] * 4  # clamped at T, as the Δ form
    end = schedule.substeps(parse("IV-IV"), 3, 400.0, 4, grid=grid)
    assert [s.t_to for s in end] == [0.0, 0.0, 0.0, 400.0]
    # the Δ form is unchanged: Δ = 250 on the τ axis
    assert [(s.t_from, s.t_to) for s in schedule.substeps(parse("IV-IV"), 1, 800.5, 4)] == [
        (800.5, 550.5), (550.5, 300.5), (300.5, 550.5), (550.5, 800.5)
    ]


# --------------------------------------------------------------------------------------------------
# The interpreter runs the grid plan (and the Δ plan as before), checked against a hand-written loop
# --------------------------------------------------------------------------------------------------


class Linear:
    def __init__(self, gain, shift):
        self.gain, self.shift = gain, shift

    def __call__(self, x, t, cond):
        c = cond.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return self.gain * x + self.shift * c + 1e-4 * float(t)


def by_hand(program, grid_mode, scheduler, latents, idm, vdm, cond, steps, generator):
    """The interpreter written out with the primitives and the levels computed here, not by the planner."""
    scheduler.set_timesteps(steps)
    schedule = NoiseSchedule.from_scheduler(scheduler)
    grid = [int(t) for t in scheduler.timesteps]
    delta = 1000 // steps
    models = {"I": idm, "V": vdm}
    x = latents * scheduler.init_noise_sigma
    for i, t in enumerate(grid):
        clause = program.clause_at(i, steps)
        if clause is not None and not clause.form.is_origin:
            k, form = clause.form.length, clause.form
            if grid_mode:
                level = [grid[i + j] if i + j < steps else 0 for j in range(k + 1)]
            else:
                level = [max(0, t - j * delta) for j in range(k + 1)]
            moves = [(form.denoise[j], "go", level[j], level[j + 1]) for j in range(k)]
            moves += [(form.noise[j], "back", level[k - j], level[k - j - 1]) for j in range(k)]
            for letter, direction, t_from, t_to in moves:
                if letter == "R":
                    x = add_noise(x, t_from, t_to, schedule, generator)
                else:
                    out = guided(models[letter], x, t_from, cond, 4.0 if direction == "go" else -4.0)
                    x = deterministic_step(out, x, t_from, t_to, schedule)
        eps = guided(vdm, scheduler.scale_model_input(x, t), t, cond, 7.5)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("grid_mode", [False, True])
@pytest.mark.parametrize("text", ["IV-IV", "RR-VV+II-II@i%3=2", "origin"])
def test_run_program_equals_the_hand_written_loop(grid_mode, text):
    idm, vdm = Linear(0.04, -0.2), Linear(0.05, 0.3)
    latents = torch.randn(1, 4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cond = torch.tensor([0.0, 1.0])
    make = lambda: DDIMScheduler(**SD, timestep_spacing="trailing")  # noqa: E731
    kwargs = {"substeps": "grid"} if grid_mode else {}  # the default is the Δ plan
    got = run_program(
        parse(text), idm=idm, vdm=vdm, scheduler=make(), latents=latents, idm_cond=cond, vdm_cond=cond, num_steps=7,
        guidance=7.5, generator=torch.Generator().manual_seed(1), progress=False, **kwargs,
    )
    want = by_hand(parse(text), grid_mode, make(), latents, idm, vdm, cond, 7, torch.Generator().manual_seed(1))
    assert torch.equal(got, want)  # the same operations on the same tensors


def test_run_program_refuses_a_bad_substeps_value_before_any_evaluation():
    calls = []
    vdm = lambda x, t, cond: calls.append(t) or torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="substeps must be 'delta'"):
        run_program(
            parse("V-V"), idm=None, vdm=vdm, scheduler=DDIMScheduler(**SD), latents=torch.zeros(1, 4, 1, 2, 2),
            idm_cond=None, vdm_cond=torch.tensor([0.0, 1.0]), num_steps=4, guidance=7.5, progress=False, substeps="grids",
        )
    assert calls == []


# --------------------------------------------------------------------------------------------------
# The toy backbone end to end
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    return ivmixed.load("toy")


SMALL = dict(steps=7, frames=4, height=8, width=8, progress=False, decode=False)


def test_toy_runs_the_grid_form_on_its_grid(toy):
    events = []
    video = toy.generate(PROMPT, program="IV-IV+RR-VV@i%3=2", seed=2, substeps="grid", callback=events.append, **SMALL)
    grid = grid_of(toy.make_scheduler(), 7)
    assert grid == [999, 856, 713, 570, 428, 285, 142]  # the toy world's trailing grid
    zigzag = [e for e in events if e.letter != "S"]
    assert len(zigzag) == 7 * 4
    assert all(e.t_from in set(grid) | {0} and e.t_to in set(grid) | {0} for e in zigzag)
    assert [(e.letter, e.t_from, e.t_to) for e in zigzag if e.step == 1] == [
        ("I", 856, 713), ("V", 713, 570), ("I", 570, 713), ("V", 713, 856)
    ]
    assert [(e.letter, e.t_from, e.t_to) for e in zigzag if e.step == 2] == [
        ("V", 713, 570), ("V", 570, 428), ("R", 428, 570), ("R", 570, 713)
    ]
    assert bool(torch.isfinite(video.latents).all())
    assert video.settings["substeps"] == "grid"
    delta = toy.generate(PROMPT, program="IV-IV+RR-VV@i%3=2", seed=2, **SMALL)
    assert delta.settings["substeps"] == "delta"
    assert video.cost == delta.cost  # the same letters, so the same evaluations
    assert not torch.equal(video.latents, delta.latents)  # other levels, another result
    again = toy.generate(PROMPT, program="IV-IV+RR-VV@i%3=2", seed=2, substeps="grid", **SMALL)
    assert torch.equal(again.latents, video.latents)


def test_generate_refuses_a_bad_value_before_encoding(toy, monkeypatch):
    def encode(*args, **kwargs):
        raise AssertionError("encoded before the check")

    monkeypatch.setattr(toy, "encode", encode)
    with pytest.raises(ValueError, match=r"substeps must be 'delta' .* got 'Δ'"):
        toy.generate(PROMPT, program="IV-IV", substeps="Δ", **SMALL)


# --------------------------------------------------------------------------------------------------
# explain, the CLI and batch
# --------------------------------------------------------------------------------------------------


def test_explain_prints_the_grid_levels():
    grid = [999, 749, 499, 249]
    info = explain(parse("IV-IV"), 4, 16, substeps="grid", grid=grid, grid_name="trailing")
    assert info["substeps"] == "grid" and info["grid_name"] == "trailing" and info["delta"] == 250
    assert [s["t"] for s in info["steps"]] == [999, 749, 499]
    assert [(s["t_from"], s["t_to"]) for s in info["steps"][2]["substeps"]] == [(499, 249), (249, 0), (0, 249), (249, 499)]
    text = format_explain(info).splitlines()
    assert text[1] == "steps    4, frames 16, sub-steps on the grid (each moves to the neighbouring grid timestep; delta would be 250)"
    assert "   2   499  IV-IV     denoise-first    0  I       idm    go         499 -> 249" in text
    assert " " * 39 + "1  V       vdm    go         249 -> 0" in text
    assert text[-1] == "(the first 3 of 4 steps; grid: trailing)"
    # the default plan's data have neither key, as before
    assert "substeps" not in explain(parse("IV-IV"), 4, 16) and "grid_name" not in explain(parse("IV-IV"), 4, 16)


def test_cli_explain_substeps_grid(capsys):
    assert main(["explain", "IV-IV", "--steps", "7", "--substeps", "grid", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["substeps"] == "grid"
    assert info["steps"][0]["substeps"][:2] == [
        {"letter": "I", "model": "idm", "direction": "go", "t_from": 999, "t_to": 832},
        {"letter": "V", "model": "vdm", "direction": "go", "t_from": 832, "t_to": 666},
    ]  # the DDIM linspace grid 999, 832, 666, …
    assert main(["explain", "IV-IV", "--steps", "7", "--substeps", "grid"]) == 0
    out = capsys.readouterr().out
    assert "sub-steps on the grid" in out and "999 -> 832" in out


def test_cli_explain_substeps_grid_on_a_backbones_own_grid(capsys):
    # was refused with --backbone; the few-step and flow planners now take the option
    assert main(["explain", "IV-IV", "--backbone", "animatediff-lightning", "--steps", "8", "--substeps", "grid", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    euler = EulerDiscreteScheduler(beta_schedule="linear", timestep_spacing="trailing")
    euler.set_timesteps(8)
    grid = [int(t) for t in euler.timesteps]  # 999, 874, 749, …: Δ = 125 would land between them only off the grid
    assert info["substeps"] == "grid"
    for step in info["steps"]:
        for sub in step["substeps"]:
            assert sub["t_from"] in grid + [0] and sub["t_to"] in grid + [0, 1000]
    assert info["steps"][1]["substeps"][0] == {"letter": "I", "model": "idm", "direction": "go", "t_from": grid[1], "t_to": grid[2]}

    assert main(["explain", "IV-IV", "--backbone", "wan", "--steps", "4", "--substeps", "grid", "--json"]) == 0
    flow = json.loads(capsys.readouterr().out)
    levels = [step["level"] for step in flow["steps"]]
    assert flow["substeps"] == "grid"
    first = flow["steps"][0]["substeps"]
    assert [first[0]["t_from"], first[0]["t_to"], first[1]["t_to"]] == levels[:3]  # grid level to grid level
    assert main(["explain", "IV-IV", "--backbone", "wan", "--steps", "4", "--substeps", "grid"]) == 0
    assert "sub-steps on the grid" in capsys.readouterr().out
    assert main(["explain", "IV-IV", "--backbone", "wan", "--steps", "4", "--json"]) == 0
    delta = json.loads(capsys.readouterr().out)
    assert "substeps" not in delta and delta["steps"][0]["substeps"][0]["t_to"] != levels[1]  # the default is Δ


@pytest.mark.parametrize("command", ["generate", "explain", "sweep", "compare", "batch"])
def test_cli_refuses_a_bad_value_before_loading(command, tmp_path, capsys):
    argv = {
        "generate": ["generate", "--out", str(tmp_path / "v.npy")],
        "explain": ["explain", "IV-IV"],
        "sweep": ["sweep", "--programs", "origin,IV-IV"],
        "compare": ["compare", "--programs", "origin,IV-IV", "--out", str(tmp_path / "c.png")],
        "batch": ["batch", str(tmp_path / "p.txt"), "--programs", "origin", "--out", str(tmp_path / "b")],
    }[command]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--substeps", "half"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --substeps: invalid choice: 'half' (choose from 'delta', 'grid')" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_generate_records_the_option_in_the_manifest(tmp_path, capsys):
    out = tmp_path / "v.npy"
    args = ["generate", "--program", "IV-IV", "--steps", "4", "--frames", "4", "--height", "8", "--width", "8", "--seed", "1"]
    assert main([*args, "--substeps", "grid", "--out", str(out)]) == 0
    manifest = json.loads(out.with_name("v.npy.json").read_text())
    assert manifest["settings"]["substeps"] == "grid"
    assert main([*args, "--out", str(tmp_path / "d.npy")]) == 0
    assert json.loads((tmp_path / "d.npy.json").read_text())["settings"]["substeps"] == "delta"


def test_batch_records_grid_and_refuses_a_change(tmp_path):
    from ivmixed.batch import ConfigMismatch, run_batch

    out = tmp_path / "out"
    small = dict(steps=4, frames=4, height=8, width=8)
    run_batch([PROMPT], out, programs=["IV-IV"], backbone="toy", format="npy", progress=False, substeps="grid", **small)
    assert json.loads((out / "run.json").read_text())["config"]["generate"]["substeps"] == "grid"
    with pytest.raises(ConfigMismatch, match=r'generate.substeps: was "grid", now not set'):
        run_batch([PROMPT], out, programs=["IV-IV"], backbone="toy", format="npy", progress=False, **small)
    again = run_batch([PROMPT], out, programs=["IV-IV"], backbone="toy", format="npy", progress=False, substeps="grid", **small)
    assert (again.generated, again.skipped) == (0, 1)
    # the default is not written into run.json, so folders made before the option existed still match
    plain = tmp_path / "plain"
    run_batch([PROMPT], plain, programs=["origin"], backbone="toy", format="npy", progress=False, substeps="delta", **small)
    assert "substeps" not in json.loads((plain / "run.json").read_text())["config"]["generate"]


def test_the_letter_table():
    assert list(LETTERS) == ["R", "I", "V"]
    r, i, v = LETTERS.values()
    assert (r.role, r.back, r.go, r.evaluations) == (None, Primitive.ADD_NOISE, None, 0)
    assert (i.role, i.back, i.go, i.evaluations) == (Role.IDM, Primitive.DDIM_INVERSION, Primitive.DDIM_DENOISE, 1)
    assert (v.role, v.back, v.go) == (Role.VDM, Primitive.DDIM_INVERSION, Primitive.DDIM_DENOISE)
    assert Role.IDM == "idm" and Direction.BACK == "back" and json.dumps([Role.VDM, Direction.GO]) == '["vdm", "go"]'
    assert f"{Role.IDM:<5}|" == "idm  |" and Role.IDM.letters == "I"
    assert Direction.GO.phase == "denoise" and Direction.BACK.phase == "add-noise"
    plan = parse("RI-VV").substeps(0, 999, 50)
    assert [s.primitive for s in plan] == [Primitive.DDIM_DENOISE] * 2 + [Primitive.ADD_NOISE, Primitive.DDIM_INVERSION]
    assert type(plan[0].model) is Role and type(plan[0].direction) is Direction
    assert type(plan[0].as_dict()["model"]) is str
