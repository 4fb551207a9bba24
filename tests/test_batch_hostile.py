"""``ivmixed batch`` under hostile conditions: refused input, a full disk, long programs, two processes on one
folder, Ctrl-C and SIGTERM (subprocess tests, bounded in time)."""

import collections
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ivmixed.batch import INDEX_FILE, MAX_PROGRAM_DIR_BYTES, plan_jobs, program_dir, read_index, run_batch
from ivmixed.cli import main
from ivmixed.program import parse
from ivmixed.prompts import items_from_prompts
from ivmixed.registry import BackboneSpec, get_spec, register_backbone, unregister_backbone

SMALL_ARGS = ["--steps", "4", "--frames", "4", "--height", "8", "--width", "8"]
SMALL = dict(steps=4, frames=4, height=8, width=8)
LONG_PROGRAM = "+".join(f"IV-IV@i%{k}={k - 1}" for k in range(2, 30))


def prompt_file(tmp_path, lines, name="prompts.txt"):
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def toy():
    import ivmixed

    return ivmixed.load("toy")


@pytest.fixture
def loads(monkeypatch):
    """Counts backbone loads (they still happen)."""
    calls = []
    real = BackboneSpec.load

    def counting(self, **options):
        calls.append(self.name)
        return real(self, **options)

    monkeypatch.setattr(BackboneSpec, "load", counting)
    return calls


@pytest.fixture
def declared_toy():
    """The toy world registered with a spec that declares its presets (none) and its vocabulary (the prompt check)."""
    spec = get_spec("toy")
    fields = {**spec.__dict__, "name": "toy-declared", "presets": (), "prompt_check": "ivmixed.backbones.toyworld:parse_prompt"}
    register_backbone("toy-declared", BackboneSpec(**fields))
    yield "toy-declared"
    unregister_backbone("toy-declared")


# -- refused before anything loads or is written ------------------------------------------------------------------


def run_refused(tmp_path, capsys, argv):
    before = tree(tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert tree(tmp_path) == before  # nothing created: no folder, no run.json
    assert err.startswith("ivmixed batch: error: ") and err.count("\n") == 1 and "Errno" not in err
    return err


def test_a_prompt_with_an_unknown_word_is_refused_before_loading(tmp_path, capsys, loads, declared_toy):
    prompts = prompt_file(tmp_path, ["a bright blob moving left", "a purple zebra"])
    err = run_refused(tmp_path, capsys, ["batch", str(prompts), "--backbone", declared_toy, "--programs", "origin",
                                         "--out", str(tmp_path / "out"), *SMALL_ARGS])
    assert "does not know the word(s) 'purple', 'zebra'" in err
    assert loads == []


def test_a_toy_prompt_with_an_unknown_word_is_refused_before_loading(tmp_path, capsys, loads):
    prompts = prompt_file(tmp_path, ["a bright blob moving left", "a purple zebra"])
    err = run_refused(tmp_path, capsys, ["batch", str(prompts), "--programs", "origin", "--out", str(tmp_path / "out"), *SMALL_ARGS])
    assert "'purple', 'zebra'" in err and loads == []


def test_an_unknown_preset_is_refused_before_loading(tmp_path, capsys, loads, declared_toy):
    prompts = prompt_file(tmp_path, ["a bright blob moving left"])
    argv = ["batch", str(prompts), "--programs", "origin", "--preset", "nope", "--out", str(tmp_path / "out"), *SMALL_ARGS]
    err = run_refused(tmp_path, capsys, [*argv, "--backbone", declared_toy])
    assert "--preset 'nope': backbone 'toy-declared' has no such preset" in err
    assert loads == []
    err = run_refused(tmp_path, capsys, argv)  # the plain toy too: refused, nothing recorded
    assert "--preset 'nope': backbone 'toy' has no such preset" in err
    if get_spec("toy").presets is not None:  # its spec declares its presets: refused before loading
        assert loads == []


def test_too_many_steps_are_refused_and_nothing_is_recorded(tmp_path, capsys, loads):
    prompts = prompt_file(tmp_path, ["a bright blob moving left"])
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--programs", "origin", "--out", str(out), "--format", "npy", "--quiet", "--frames", "2", "--height", "8", "--width", "8"]
    err = run_refused(tmp_path, capsys, [*argv, "--steps", "2000"])
    assert "--steps 2000 is more than the 1000 timesteps backbone 'toy' was trained on" in err
    assert main([*argv, "--steps", "4"]) == 0  # the corrected command needs no --new-run
    assert json.loads((out / "run.json").read_text())["config"]["generate"]["steps"] == 4


def test_too_many_steps_are_refused_before_loading(tmp_path, capsys, loads):
    prompts = prompt_file(tmp_path, ["a bright blob moving left"])
    run_refused(tmp_path, capsys, ["batch", str(prompts), "--programs", "origin", "--out", str(tmp_path / "out"), "--steps", "2000"])
    assert loads == []


@pytest.mark.parametrize("where", ["/proc/ivmixed-out/x", "under-a-file"])
def test_an_out_folder_that_cannot_be_created_is_refused_in_words(tmp_path, capsys, loads, where):
    prompts = prompt_file(tmp_path, ["a bright blob moving left"])
    out = str(prompts / "x") if where == "under-a-file" else where
    err = run_refused(tmp_path, capsys, ["batch", str(prompts), "--programs", "origin", "--out", out, *SMALL_ARGS])
    if where == "under-a-file":
        assert err == f"ivmixed batch: error: --out {out}: {prompts} is a file, so the folder cannot be created there\n"
    else:
        assert err.startswith(f"ivmixed batch: error: --out {out}: cannot create files in /proc (")
    assert loads == []


def test_an_incompatible_image_video_pair_leaves_no_folder(tmp_path, capsys, tiny_models, tiny_animatediff, torch_single_thread):
    prompts = prompt_file(tmp_path, ["a horse"])
    options = {**tiny_animatediff, "image_model": str(tiny_models.image_unet_8ch)}
    argv = ["batch", str(prompts), "--programs", "origin", "--backbone", "animatediff", "--model", options["model"],
            "--image-model", options["image_model"], "-o", f"motion_adapter={options['motion_adapter']}", "--device", "cpu",
            "--out", str(tmp_path / "out"), "--steps", "2", "--frames", "2", "--height", "32", "--width", "32"]
    err = run_refused(tmp_path, capsys, argv)
    assert "works on 8-channel latents but the video model" in err


def test_dry_run_refuses_a_changed_configuration_like_the_real_run(tmp_path, capsys):
    prompts = prompt_file(tmp_path, ["a bright blob moving left", "a dark blob moving up"])
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--programs", "origin", "--out", str(out), "--format", "npy", "--quiet", "--frames", "2", "--height", "8", "--width", "8"]
    assert main([*argv, "--steps", "4"]) == 0
    capsys.readouterr()
    before = tree(out)
    assert main([*argv, "--steps", "5"]) == 2
    real = capsys.readouterr().err
    assert main([*argv, "--steps", "5", "--dry-run"]) == 2
    dry = capsys.readouterr()
    assert dry.err == real and "generate.steps: was 4, now 5" in real and dry.out == ""
    assert main([*argv, "--steps", "5", "--dry-run", "--new-run"]) == 0
    assert capsys.readouterr().out == (
        f"{out}: 2 items × 1 programs × 1 seeds = 2 videos; 0 finished, 2 to do\n"
        f"--new-run: the previous run would be moved aside into {out}/replaced-<time>/\n"
    )
    assert main([*argv, "--steps", "4", "--dry-run"]) == 0
    assert capsys.readouterr().out.endswith("2 videos; 2 finished, 0 to do\n")
    assert tree(out) == before  # the dry runs wrote nothing


# -- a full disk, left-over temporary files ------------------------------------------------------------------------


def fill_disk_under(monkeypatch, folder: Path):
    """Every os.write to a file under ``folder`` fails with ENOSPC, as on a full disk (creating empty files still works)."""
    real = os.write
    inside = str(folder.resolve())

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(inside + os.sep):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("exists", [False, True])
def test_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, exists):
    prompts = prompt_file(tmp_path, ["a bright blob moving left"])
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "runs" / "out"
    if exists:
        out.mkdir(parents=True)
    fill_disk_under(monkeypatch, disk)
    status = main(["batch", str(prompts), "--programs", "origin", "--out", str(out), "--format", "npy", "--quiet", *SMALL_ARGS])
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert status == 1
    assert err == f"ivmixed batch: failed: cannot write {out}/run.json: no space left on device\n"
    assert tree(disk) == (["runs", "runs/out"] if exists else [])  # no .run.json.<pid>.tmp, no folder it created


def test_stale_run_json_temporary_files_are_removed_by_a_later_run(tmp_path, toy):
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh = out / ".run.json.4242.tmp", out / ".run.json.4343.tmp"
    stale.write_text("")
    fresh.write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    result = run_batch(["a bright blob moving left"], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
    assert result.ok
    assert not stale.exists()
    assert fresh.exists()  # young: it may belong to a process writing it right now


# -- long programs ----------------------------------------------------------------------------------------------


def test_long_program_folder_names_are_capped_stable_and_distinct(tmp_path, toy):
    assert len(LONG_PROGRAM) == 374
    name = program_dir(LONG_PROGRAM)
    assert len(name.encode()) == MAX_PROGRAM_DIR_BYTES and name == program_dir(LONG_PROGRAM)
    assert name.startswith("IV-IV@i%2=1+IV-IV@i%3=2+") and "~~" in name
    other = LONG_PROGRAM.replace("i%29=28", "i%29=27")
    assert program_dir(other) != name and program_dir(other)[:120] == name[:120]
    assert program_dir("IV-IV@i%2=1") == "IV-IV@i%2=1"  # short names unchanged
    out = tmp_path / "out"
    result = run_batch(["a bright blob moving left"], out, programs=[LONG_PROGRAM, "origin"], backbone=toy, format="npy", progress=False, **SMALL)
    assert result.ok and result.generated == 2
    assert (out / name / "00001-0.npy").is_file() and (out / name / "00001-0.npy.json").is_file()
    assert read_index(out)[f"{name}/00001-0"]["program"] == str(parse(LONG_PROGRAM))


# -- two processes, signals (subprocesses) ------------------------------------------------------------------------

#: runs ``ivmixed`` in a subprocess with hooks: a slower toy world (so two processes overlap), a start signal
#: (a file to wait for), and an at-fork hook that raises SIGINT inside the fork of ffmpeg's subprocess
HARNESS = textwrap.dedent(
    """
    import os, signal, sys, time
    slow, go, fork_sigint = float(os.environ.get("SLOW", "0")), os.environ.get("GO"), os.environ.get("FORK_SIGINT")
    if slow:
        from ivmixed.backbones.toyworld import ToyBackbone
        real = ToyBackbone.generate
        def generate(self, *args, **kwargs):
            time.sleep(slow)
            return real(self, *args, **kwargs)
        ToyBackbone.generate = generate
    if fork_sigint:
        from ivmixed import interrupts
        fired = []
        def after_fork():  # the first fork once the command's handlers are in place: ffmpeg starting
            if not fired and signal.getsignal(signal.SIGINT) is interrupts._handler:
                fired.append(1)
                signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is swallowed: "Exception ignored in ..."
        os.register_at_fork(after_in_parent=after_fork)
    from ivmixed.cli import main
    if go:
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.005)
    sys.exit(main(sys.argv[1:]))
    """
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def harness(args, **env):
    return [sys.executable, "-c", HARNESS, *args], {**ENV, **env}


def index_lines(out: Path) -> int:
    try:
        return (out / INDEX_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def leftovers(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name or ".partial" in p.parts or p.name == ".partial"]


def test_two_plain_processes_on_one_folder_make_every_video_once(tmp_path):
    prompts = prompt_file(tmp_path, [f"a {'bright' if i % 2 else 'dark'} blob moving {'left' if i % 3 else 'up'}" for i in range(20)])
    out, go = tmp_path / "out", tmp_path / "go"
    argv = ["batch", str(prompts), "--programs", "origin,IV-IV", "--out", str(out), "--format", "npy", "--json", *SMALL_ARGS]
    cmd, env = harness(argv, SLOW="0.03", GO=str(go))
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go.write_text("")
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(stdout) for stdout, _ in outputs]
    generated = [r["generated"] for r in results]
    assert sum(generated) == 40  # the 40-video plan made once in all
    assert min(generated) > 0  # both worked on it
    jobs = plan_jobs(items_from_prompts(prompts.read_text().splitlines()), ["origin", "IV-IV"])
    counts = collections.Counter(json.loads(line)["key"] for line in (out / INDEX_FILE).read_text().splitlines())
    assert set(counts) == {j.key for j in jobs} and max(counts.values()) == 1
    assert leftovers(out) == []


def test_a_ctrl_c_swallowed_while_ffmpeg_starts_still_stops_the_run(tmp_path):
    prompts = prompt_file(tmp_path, ["a bright blob moving left"] * 6)
    out = tmp_path / "out"
    cmd, env = harness(["batch", str(prompts), "--programs", "origin", "--out", str(out), "--quiet", *SMALL_ARGS], FORK_SIGINT="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr  # the interrupt was swallowed ...
    assert done.returncode == 130, done.stderr[-2000:]  # ... and the run stopped all the same
    assert done.stderr.rstrip().endswith("ivmixed batch: interrupted (Ctrl-C)")
    assert index_lines(out) == 0  # stopped before the video being written was put in place
    assert leftovers(out) == []


def test_the_first_sigint_or_sigterm_stops_an_mp4_batch_and_removes_its_staging(tmp_path):
    """One batch gets SIGINT, another (at the same time) SIGTERM, each while it is making videos."""
    prompts = prompt_file(tmp_path, ["a bright blob moving left", "a dark blob moving up"] * 20)
    runs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / f"out-{sig.name}"
        cmd, env = harness(["batch", str(prompts), "--programs", "origin,IV-IV", "--out", str(out), "--quiet", *SMALL_ARGS], SLOW="0.01")
        runs[sig] = (out, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        waiting, deadline = dict(runs), time.monotonic() + 120
        while waiting and time.monotonic() < deadline:
            for sig, (out, proc) in list(waiting.items()):
                if index_lines(out) >= 3 or proc.poll() is not None:
                    assert proc.poll() is None, "the batch ended before the signal"
                    proc.send_signal(sig)
                    del waiting[sig]
            time.sleep(0.002)
        errors = {sig: proc.communicate(timeout=60)[1] for sig, (_, proc) in runs.items()}
    finally:
        for _, proc in runs.values():
            proc.kill()
    for sig, (out, proc) in runs.items():
        name = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}[sig]
        assert proc.returncode == 128 + sig, errors[sig][-2000:]  # 130, 143
        assert errors[sig].rstrip().endswith(f"ivmixed batch: {name}")
        assert 3 <= index_lines(out) < 80
        assert leftovers(out) == []
