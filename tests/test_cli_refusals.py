"""Bad requests refused before any model loads, in words; outputs never replaced silently; the four zigzag ramps.

``no_loading`` makes loading a backbone fail loudly, so a check that only runs after loading fails the test.
"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ivmixed
from ivmixed.cli import main
from ivmixed.registry import BackboneSpec, Option, get_spec

FAST = ["--steps", "4", "--quiet"]


class Loaded(AssertionError):
    pass


@pytest.fixture
def no_loading(monkeypatch):
    def load(self, **options):
        raise Loaded(f"backbone '{self.name}' was loaded; the request should have been refused before")

    monkeypatch.setattr(BackboneSpec, "load", load)


def refused(argv, capsys, tmp_path, message):
    """Run ``argv`` in ``tmp_path``: exit 2, one line naming ``message``, nothing written."""
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ivmixed {argv[0]}: error: "), err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(tmp_path.rglob("*")) == before
    return err


# -- backbone options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, message",
    [
        ("mismatch=abc", "option mismatch='abc': expected a number, 0 <= mismatch <= 10, got 'abc'"),
        ("mismatch=nan", "option mismatch=nan: expected a number, 0 <= mismatch <= 10, got nan (not a finite number)"),
        ("contrast=abc", "option contrast='abc': expected a number, 0 < contrast <= 1, got 'abc'"),
        ("spread=1e999", "option spread=inf: expected a number, 0 < spread <= 1, got inf (not a finite number)"),
        ("spread=2", "option spread=2: expected a number, 0 < spread <= 1, got 2"),
        ("fps=0", "option fps=0: expected a number, 0 < fps <= 240, got 0"),
        ("frames=2.5", "option frames=2.5: expected an integer, 1 <= frames <= 256, got 2.5"),
        ("dtype=fp16", "option dtype='fp16': expected one of float64, fp64, float32, fp32, got 'fp16'"),
        ("threads=0", "option threads=0: expected an integer, 1 <= threads <= 1024, or none, got 0"),
    ],
)
def test_option_values_are_checked_before_loading(option, message, no_loading, tmp_path, capsys):
    err = refused(["generate", "-o", option, "--out", str(tmp_path / "x.gif"), *FAST], capsys, tmp_path, message)
    assert err.startswith("ivmixed generate: error: backbone 'toy': ") and "`ivmixed list --options toy`" in err


def test_huge_sizes_are_refused_by_the_declared_ranges(no_loading, tmp_path, capsys):
    refused(["generate", "--height", "4096", "--out", str(tmp_path / "x.gif")], capsys, tmp_path,
            "--height 4096: backbone 'toy' takes an integer, 1 <= height <= 64")
    refused(["generate", "--frames", "100000", "--out", str(tmp_path / "x.gif")], capsys, tmp_path, "1 <= frames <= 256")


def test_option_values_are_checked_in_the_python_api_too():
    with pytest.raises(ValueError, match=r"option spread='abc': expected a number, 0 < spread <= 1"):
        ivmixed.load("toy", spread="abc")
    backbone = ivmixed.load("toy", spread="0.08", threads="none", mismatch=1)  # text is read as the option's type
    assert backbone.world.spread == 0.08 and backbone.world.mismatch == 1


def test_good_option_values_still_run(tmp_path):
    out = tmp_path / "x.npy"
    assert main(["generate", "-o", "spread=0.08", "-o", "fps=12", "-o", "vdm_contrast=none", "--out", str(out), *FAST]) == 0
    assert json.loads(out.with_name("x.npy.json").read_text())["world_parameters"]["spread"] == 0.08


def test_option_declaration_reads_types():
    opt = Option("scale", "float", 1.0, min=0, max=2, max_open=True)
    assert opt.check("1.5") == 1.5 and opt.check(1) == 1 and opt.check(None) is None
    for bad in ("2", True, [1], "x"):
        with pytest.raises(ValueError, match="scale"):
            opt.check(bad)
    flag = Option("fast", "bool", False)
    assert flag.check("yes") is True and flag.check("0") is False
    with pytest.raises(ValueError, match="expected true or false"):
        flag.check("maybe")
    with pytest.raises(ValueError, match="type must be one of"):
        Option("x", "complex")
    path = Option("model", "str", "org/model")
    assert path.check(Path("/m")) == Path("/m") and path.check("org/m") == "org/m"  # objects the factory judges pass
    with pytest.raises(ValueError, match=r"option model=3: expected text, got 3"):
        path.check(3)


def test_the_toy_table_declares_every_option_of_the_toy_backbone():
    import inspect

    from ivmixed.backbones.toyworld import ToyBackbone

    params = [n for n, p in inspect.signature(ToyBackbone).parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    spec = get_spec("toy")
    assert [o.name for o in spec.options] == params
    for o in spec.options:  # the declared defaults are the factory's
        assert inspect.signature(ToyBackbone).parameters[o.name].default in (o.default, None), o.name
    assert spec.num_train_timesteps == ToyBackbone().zigzag_schedule().num_train_timesteps
    assert spec.presets == tuple(ToyBackbone().defaults.presets)


@pytest.mark.parametrize("name", ["animatediff", "modelscope"])
def test_declared_options_of_the_diffusers_backbones_are_factory_keywords(name):
    import inspect

    spec = get_spec(name)
    params = inspect.signature(spec.resolve_factory()).parameters
    assert spec.options and all(o.name in params for o in spec.options)
    assert {o.name: o.default for o in spec.options}["model"] == params["model"].default


def test_list_options_prints_the_table(capsys):
    assert main(["list", "--options", "toy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("options of backbone 'toy' (give them as -o NAME=VALUE")
    assert "  mismatch" in out and "a number, 0 <= mismatch <= 10; default 0.5" in out
    assert "one of float64, fp64, float32, fp32; default float64" in out
    assert main(["list", "--options", "toy", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["backbone"] == "toy" and {r["name"] for r in rows["options"]} >= {"world", "spread", "fps", "threads"}
    assert main(["list", "--options", "nope"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err


def test_list_options_of_a_backbone_without_a_table(capsys):
    def factory(*, model: str = "m", strength: float = 1.0):
        raise AssertionError("not called")

    ivmixed.register_backbone("tableless", factory)
    try:
        assert main(["list", "--options", "tableless"]) == 0
    finally:
        ivmixed.unregister_backbone("tableless")
    out = capsys.readouterr().out
    assert "declares no options" in out and "its factory takes: model, strength" in out


def test_help_names_the_options_listing(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "ivmixed list --options BACKBONE" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "`ivmixed list --options BACKBONE` lists them" in text and "--overwrite" in text and "--back-sign {-,+}" in text


# -- steps, presets, programs ------------------------------------------------------------------------------


def test_steps_beyond_the_timesteps_are_refused_before_loading(no_loading, tmp_path, capsys):
    refused(["generate", "--steps", "2000", "--out", str(tmp_path / "x.gif")], capsys, tmp_path,
            "--steps 2000 is more than the 1000 timesteps backbone 'toy' was trained on; use at most --steps 1000")
    refused(["compare", "--steps", "2000", "--out", str(tmp_path / "c.gif")], capsys, tmp_path, "--steps 2000 is more than")


def test_explain_refuses_huge_steps_at_once(tmp_path):
    # without the check the plan of 10^8 steps is built first (minutes); the timeout bounds the test, it measures nothing
    proc = subprocess.run([sys.executable, "-m", "ivmixed", "explain", "IV-IV", "--steps", "100000000", "--frames", "16"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "ivmixed explain: error: --steps 100000000 is more than the 1000 timesteps of the noise schedule "
        "(--train-timesteps); use at most --steps 1000"
    )


def test_unknown_preset_is_refused_before_loading(no_loading, tmp_path, capsys):
    refused(["generate", "--preset", "foo", "--out", str(tmp_path / "x.gif")], capsys, tmp_path,
            "--preset 'foo': backbone 'toy' has no such preset; its presets: none")
    # animatediff reads its presets from the class, without weights
    refused(["generate", "--backbone", "animatediff", "--preset", "foo", "--out", str(tmp_path / "x.mp4")], capsys, tmp_path,
            "backbone 'animatediff' has no such preset; its presets: reference")


def test_duplicate_programs_in_compare_are_refused_before_loading(no_loading, tmp_path, capsys):
    refused(["compare", "--programs", "origin,IV-IV,IV-IV", "--out", str(tmp_path / "c.gif")], capsys, tmp_path,
            "--programs: 'IV-IV' is listed twice; give each program once")
    refused(["compare", "--programs", "IV-IV,IV-IV:df", "--out", str(tmp_path / "c.gif")], capsys, tmp_path,
            "'IV-IV' and 'IV-IV:df' are the same program (IV-IV)")


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_program_is_an_error(text, no_loading, tmp_path, capsys):
    refused(["generate", "--program", text, "--out", str(tmp_path / "x.gif")], capsys, tmp_path, "--program is empty")
    refused(["explain", text], capsys, tmp_path, "the program is empty")


def test_unknown_prompt_word_is_refused_before_loading(no_loading, tmp_path, capsys):
    refused(["generate", "--prompt", "a purple blob", "--out", str(tmp_path / "x.gif")], capsys, tmp_path,
            "the toy world does not know the word(s) 'purple'")
    refused(["generate", "--negative-prompt", "a purple blob", "--out", str(tmp_path / "x.gif")], capsys, tmp_path, "'purple'")


def test_lora_with_a_bad_scale_says_bad_scale(no_loading, tmp_path, capsys):
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"")
    before = sorted(tmp_path.rglob("*"))
    assert main(["generate", "--backbone", "animatediff", "--image-lora", f"{lora}:abc", "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert f"--image-lora '{lora}:abc': bad scale 'abc'; expected FILE or FILE:SCALE with a number" in err
    assert sorted(tmp_path.rglob("*")) == before
    assert main(["generate", "--backbone", "animatediff", "--image-lora", f"{lora}:inf", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "the scale must be a finite number" in capsys.readouterr().err


def test_a_huge_prompt_is_quoted_shortened(no_loading, tmp_path, capsys):
    prompt = "a bright blob moving left " * 40_000 + "zorp"
    err = refused(["generate", "--prompt", prompt, "--out", str(tmp_path / "x.gif")], capsys, tmp_path, "'zorp'")
    assert len(err) < 1000 and f"({len(prompt):,} characters)" in err


# -- output paths ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (os.path.isdir("/proc/self") and os.path.isdir("/sys/kernel")), reason="needs Linux's /proc and /sys")
@pytest.mark.parametrize("out, cause", [("/proc/x.gif", "/proc"), ("/sys/x.gif", "/sys")])
def test_an_unwritable_folder_is_refused_before_sampling(out, cause, no_loading, tmp_path, capsys):
    err = refused(["generate", "--out", out], capsys, tmp_path, f"--out {out}: cannot create files in {cause} (")
    assert "Errno" not in err and ".tmp" not in err
    refused(["compare", "--out", out], capsys, tmp_path, f"cannot create files in {cause}")


def test_a_folder_as_out_is_named_a_folder(no_loading, tmp_path, capsys):
    refused(["generate", "--out", str(tmp_path)], capsys, tmp_path, f"--out {tmp_path} is a folder; give a file name ending in")


def test_a_write_failure_at_save_time_is_one_line_and_leaves_nothing(monkeypatch, tmp_path, capsys):
    import ivmixed.io

    def full_disk(clips, out, suffix, fps):
        Path(out).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ivmixed.io, "_encode", full_disk)
    out = tmp_path / "x.gif"
    assert main(["generate", "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"ivmixed generate: failed: cannot write {out}: no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_to_replace_an_output_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert main(["generate", "--out", str(out), "--seed", "1", *FAST]) == 0
    first = out.read_bytes(), out.with_name("x.npy.json").read_text()
    capsys.readouterr()
    refused(["generate", "--out", str(out), "--seed", "2", *FAST], capsys, tmp_path,
            f"--out {out}: {out} and {out}.json exist already ({out} is a file); pass --overwrite to replace it")
    assert (out.read_bytes(), out.with_name("x.npy.json").read_text()) == first
    assert main(["generate", "--out", str(out), "--seed", "2", "--overwrite", *FAST]) == 0
    capsys.readouterr()
    assert out.read_bytes() != first[0] and json.loads(out.with_name("x.npy.json").read_text())["seed"] == 2
    out.unlink()  # a manifest alone is refused too: it would be replaced
    refused(["generate", "--out", str(out), *FAST], capsys, tmp_path, f"{out}.json exists already")


def test_a_symlink_at_out_is_refused_or_replaced_never_written_through(tmp_path, capsys):
    target = tmp_path / "target.npy"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    refused(["generate", "--out", str(link), *FAST], capsys, tmp_path, f"({link} is a symbolic link)")
    assert main(["generate", "--out", str(link), "--overwrite", *FAST]) == 0
    assert not link.is_symlink() and np.load(link).shape == (8, 16, 16, 3)
    assert target.read_bytes() == b"keep me"


def test_compare_and_sweep_plot_refuse_an_existing_file(no_loading, tmp_path, capsys):
    out = tmp_path / "c.gif"
    out.write_bytes(b"old")
    refused(["compare", "--out", str(out)], capsys, tmp_path, "exists already")
    plot = tmp_path / "forms.png"
    plot.write_bytes(b"old")
    refused(["sweep", "--programs", "origin", "--plot", str(plot)], capsys, tmp_path,
            f"--plot {plot}: {plot} exists already ({plot} is a file); pass --overwrite")
    assert out.read_bytes() == plot.read_bytes() == b"old"


# -- go and back guidance from the CLI ---------------------------------------------------------------------


def zigzag_args(*argv):
    from ivmixed.cli import build_parser

    return build_parser().parse_args(["generate", *argv])


def test_each_of_the_four_ramps_and_the_back_sign():
    from ivmixed.commands._common import zigzag_table
    from ivmixed.schedules import Ramp

    table = zigzag_table(zigzag_args("--zigzag-guidance", "3", "--i-go-guidance", "6", "--i-back-guidance", "2",
                                     "--v-guidance", "linear(5,1)", "--v-back-guidance=-4"))
    assert table.as_dict() == {"i_go": "constant(6)", "i_back": "constant(2)", "v_go": "linear(5, 1)", "v_back": "constant(-4)"}
    built = table.build(5)
    assert (built.scale("idm", "go", 0), built.scale("idm", "back", 0)) == (6.0, -2.0)
    assert (built.scale("vdm", "go", 4), built.scale("vdm", "back", 4)) == (1.0, 4.0)  # a negative back value flips one ramp

    flipped = zigzag_table(zigzag_args("--back-sign", "+", "--i-back-guidance", "karras(6,2)"))
    assert flipped.as_dict()["i_back"] == "-karras(6, 2)" and flipped.as_dict()["v_back"] == "-constant(4)"
    b = flipped.build(3)
    assert b.scale("idm", "back", 0) == pytest.approx(6.0) and b.scale("vdm", "back", 1) == 4.0 and b.scale("vdm", "go", 1) == 4.0
    assert flipped.i_go == Ramp("constant", (4.0,))
    assert zigzag_table(zigzag_args()) is None
    with pytest.raises(ValueError, match=r"--v-go-guidance: cannot read guidance ramp 'fast'"):
        zigzag_table(zigzag_args("--v-go-guidance", "fast"))


def test_the_back_sign_reaches_the_sampler_and_changes_the_video(tmp_path):
    from ivmixed.commands._common import zigzag_table

    backbone = ivmixed.load("toy")
    events = {}
    for sign in "-+":
        seen = []
        backbone.generate("a bright blob moving left", program="IV-IV", steps=4, seed=0, progress=False,
                          zigzag=zigzag_table(zigzag_args("--back-sign", sign, "--i-go-guidance", "6")), callback=seen.append)
        events[sign] = seen
    back = {s: sorted({e.scale for e in ev if e.direction == "back"}) for s, ev in events.items()}
    go = {s: sorted({e.scale for e in ev if e.direction == "go" and e.letter != "S"}) for s, ev in events.items()}
    assert back == {"-": [-4.0], "+": [4.0]} and go == {"-": [4.0, 6.0], "+": [4.0, 6.0]}

    outs = [tmp_path / f"{name}.npy" for name in ("minus", "plus")]
    for out, sign in zip(outs, "-+"):
        assert main(["generate", "--out", str(out), "--back-sign", sign, "--i-back-guidance", "2", *FAST]) == 0
    m = json.loads(outs[1].with_name("plus.npy.json").read_text())
    assert m["settings"]["zigzag_guidance"]["i_back"] == "-constant(2)"
    assert not np.array_equal(np.load(outs[0]), np.load(outs[1]))


def test_the_back_sign_flips_a_presets_own_ramps():
    # was: --back-sign + with --preset replaced the preset's ramps by the default constant 4
    from ivmixed.commands._common import sampling_kwargs
    from ivmixed.registry import get_spec

    spec = get_spec("animatediff")
    table = sampling_kwargs(zigzag_args("--backbone", "animatediff", "--preset", "reference", "--back-sign", "+"), spec)["zigzag"]
    assert table.as_dict() == {
        "i_go": "karras-float32(4, 4, 7)", "i_back": "-karras-float32(4, 4, 7)", "v_go": "karras-float32(4, 4, 7)", "v_back": "-karras-float32(4, 4, 7)"
    }
    built = table.build(3)
    assert built.scale("idm", "back", 0) == 4.000000953674316 and built.scale("idm", "go", 0) == 4.000000953674316
    # without the sign, the preset's table is the backbone's business (None here); explicit ramps still win
    assert sampling_kwargs(zigzag_args("--backbone", "animatediff", "--preset", "reference"), spec)["zigzag"] is None
    given = sampling_kwargs(zigzag_args("--backbone", "animatediff", "--preset", "reference", "--back-sign", "+", "--zigzag-guidance", "2"), spec)
    assert given["zigzag"].as_dict()["v_back"] == "-constant(2)"


# -- start-up ----------------------------------------------------------------------------------------------


def test_explain_list_and_help_import_no_torch():
    code = (
        "import sys\n"
        "from ivmixed.cli import main\n"
        "assert main(['explain', 'IV-IV']) == 0\n"
        "assert main(['list', '--options', 'toy']) == 0\n"
        "try:\n    main(['generate', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_generate_on_the_toy_world_imports_no_diffusers(tmp_path):
    code = (
        "import sys\n"
        "from ivmixed.cli import main\n"
        f"assert main(['generate', '--steps', '3', '--quiet', '--out', {str(tmp_path / 'x.npy')!r}]) == 0\n"
        "print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "['torch']"


@pytest.mark.parametrize("spacing", ["trailing", "linspace"])
def test_the_toy_ddim_is_diffusers_ddim_bit_for_bit(spacing):
    """The same operations on the same tensors: tables, grids and every step are equal, not close."""
    import torch
    from diffusers import DDIMScheduler

    from ivmixed.backbones._ddim import DDIM

    for T, b0, b1 in ((1000, 1e-4, 0.02), (200, 3e-4, 0.05)):
        ours = DDIM(T, b0, b1, set_alpha_to_one=True, timestep_spacing=spacing)
        ref = DDIMScheduler(num_train_timesteps=T, beta_start=b0, beta_end=b1, beta_schedule="linear", clip_sample=False,
                            set_alpha_to_one=True, steps_offset=0, timestep_spacing=spacing, prediction_type="epsilon")
        assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod) and torch.equal(ours.final_alpha_cumprod, ref.final_alpha_cumprod)
        for n in (2, 7, 50, T):
            ours.set_timesteps(n)
            ref.set_timesteps(n)
            assert torch.equal(ours.timesteps, ref.timesteps), (T, n)
        ours.set_timesteps(7)
        ref.set_timesteps(7)
        g = torch.Generator().manual_seed(0)
        for dtype in (torch.float64, torch.float32):
            x = torch.randn(2, 1, 3, 4, 4, generator=g).to(dtype)
            eps = torch.randn(2, 1, 3, 4, 4, generator=g).to(dtype)
            for t in ref.timesteps:  # the last one steps below level 0, onto final_alpha_cumprod
                a, b = ours.step(eps, t, x), ref.step(eps, t, x)
                assert torch.equal(a.prev_sample, b.prev_sample) and torch.equal(a.pred_original_sample, b.pred_original_sample)
    with pytest.raises(ValueError, match="deterministic"):
        ours.step(eps, t, x, eta=0.5)


def test_toy_video_with_its_ddim_equals_the_one_with_diffusers_ddim(monkeypatch):
    import torch
    from diffusers import DDIMScheduler

    backbone = ivmixed.load("toy")
    ours = backbone.generate("a dark blob moving up", program="IV-IV+RR-II@i%3=1", steps=6, seed=4, progress=False)
    config = dict(vars(backbone.make_scheduler().config))
    monkeypatch.setattr(backbone, "make_scheduler", lambda: DDIMScheduler(**config))
    ref = backbone.generate("a dark blob moving up", program="IV-IV+RR-II@i%3=1", steps=6, seed=4, progress=False)
    assert isinstance(backbone.make_scheduler(), DDIMScheduler)
    assert torch.equal(ours.latents, ref.latents)


# -- the plugin contract -----------------------------------------------------------------------------------


def test_the_contract_says_to_set_the_backbone_name():
    from ivmixed.backbones.toyworld import ToyBackbone
    from ivmixed.testing import BackboneContract

    class Nameless(ToyBackbone):
        name = "?"

    ivmixed.register_backbone("nameless", Nameless)
    try:
        class TestNameless(BackboneContract):
            name = "nameless"

        with pytest.raises(AssertionError, match=r"Nameless.name is '\?', not 'nameless': set the class attribute `name = 'nameless'`"):
            TestNameless().test_loads_through_the_registry(Nameless())
    finally:
        ivmixed.unregister_backbone("nameless")
