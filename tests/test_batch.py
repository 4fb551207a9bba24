"""Batch generation: the plan, pairing, sharding, the index, crash safety (SIGKILL and resume), configuration checks."""

import collections
import hashlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ivmixed
from ivmixed.cli import main
from ivmixed.batch import (
    INDEX_FILE,
    ConfigMismatch,
    Index,
    derive_seed,
    detect_shard,
    plan_jobs,
    program_dir,
    read_index,
    run_batch,
    shard_jobs,
)
from ivmixed.prompts import PromptItem, items_from_prompts

PROMPTS = [
    "a bright blob moving right",
    "a dark blob moving left",
    "a bright blob moving up",
    "a dark blob moving down",
]
SMALL = dict(steps=4, frames=4, height=8, width=8)  # a toy video in ~10 ms
SMALL_ARGS = ["--steps", "4", "--frames", "4", "--height", "8", "--width", "8"]


@pytest.fixture(scope="module")
def toy():
    return ivmixed.load("toy")


def prompt_file(tmp_path, n, name="prompts.txt"):
    path = tmp_path / name
    path.write_text("".join(f"{PROMPTS[i % len(PROMPTS)]}\n" for i in range(n)))
    return path


def expected_files(keys, fmt="npy"):
    out = collections.defaultdict(set)
    for key in keys:
        folder, name = key.split("/")
        out[folder] |= {f"{name}.{fmt}", f"{name}.{fmt}.json"}
    return out


def assert_complete(out_dir: Path, keys, fmt="npy"):
    """Every video present exactly once with its manifest, no temporary files, the index lists each key once."""
    out_dir = Path(out_dir)
    for folder, names in expected_files(keys, fmt).items():
        assert {p.name for p in (out_dir / folder).iterdir()} == names
    leftovers = [p for p in out_dir.rglob("*") if ".tmp" in p.name or ".partial" in p.parts]
    assert leftovers == []
    lines = [json.loads(line) for line in (out_dir / INDEX_FILE).read_text().splitlines()]
    counts = collections.Counter(r["key"] for r in lines)
    assert set(counts) == set(keys)
    assert max(counts.values()) == 1


# -- the plan ------------------------------------------------------------------------------------------


def test_seed_rule_is_the_documented_formula():
    assert derive_seed(0, "00001", 0) == int(hashlib.sha256(b"0/00001/0").hexdigest()[:8], 16)
    assert derive_seed(7, "video7010", 2) == int(hashlib.sha256(b"7/video7010/2").hexdigest()[:8], 16)
    assert derive_seed(5, "anything", 2, "shared") == 7
    with pytest.raises(ValueError, match="seed mode must be one of item, shared, got 'x'"):
        derive_seed(0, "a", 0, "x")


def test_plan_pairs_programs_on_one_seed_and_orders_them_as_neighbours():
    items = items_from_prompts(PROMPTS[:2])
    jobs = plan_jobs(items, ["origin", "IV-IV", "VV-VV@66.7%"], seeds=2, seed=3)
    assert len(jobs) == 2 * 2 * 3
    assert [j.key for j in jobs[:4]] == ["origin/00001-0", "IV-IV/00001-0", "VV-VV@66.7%/00001-0", "origin/00001-1"]
    by_group = collections.defaultdict(set)
    for job in jobs:
        by_group[job.group].add((job.item.id, job.seed_index, job.seed))
    assert all(len(v) == 1 for v in by_group.values())  # every program of a group: one item, one seed
    assert len({j.seed for j in jobs}) == 4  # independent noise per item and seed index


def test_program_folders_are_readable_and_one_to_one():
    assert program_dir("IV-IV") == "IV-IV"
    assert program_dir("IV-IV:noise-first") == "IV-IV_nf"
    assert program_dir("IV-IV + VV-VV @ i%3==2") == "IV-IV+VV-VV@i%3=2"
    with pytest.raises(ValueError, match="--programs: 'IV-IV' is listed twice"):
        plan_jobs(items_from_prompts(["a"]), ["IV-IV", "origin", "IV-IV"])
    with pytest.raises(ValueError, match=r"--programs: 'IV-IV:nf' is listed twice"):  # the same program, spelt twice
        plan_jobs(items_from_prompts(["a"]), ["IV-IV:nf", "IV-IV:noise-first"])


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_are_disjoint_whole_groups_and_cover_the_plan(world):
    jobs = plan_jobs(items_from_prompts([f"p{i}" for i in range(7)]), ["origin", "IV-IV"], seeds=3)
    shares = [shard_jobs(jobs, r, world) for r in range(world)]
    keys = [j.key for share in shares for j in share]
    assert sorted(keys) == sorted(j.key for j in jobs) and len(set(keys)) == len(keys)
    for r, share in enumerate(shares):
        assert all(j.group % world == r for j in share)
    assert max(map(len, shares)) - min(map(len, shares)) <= 2  # balanced to one group (two videos)


def test_detect_shard(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert (detect_shard().rank, detect_shard().world_size, detect_shard().source) == (0, 1, "single process")
    assert detect_shard((2, 3)).source == "given"
    with pytest.raises(ValueError, match=r"--shard 3/3: need 0 <= I < N"):
        detect_shard((3, 3))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    place = detect_shard()
    assert (place.rank, place.world_size, place.source) == (1, 4, "environment")


# -- the index -----------------------------------------------------------------------------------------


def _append_many(path, worker, shared):
    index = Index(path)
    written = 0
    for i in range(150):
        written += index.append_once({"key": f"w{worker}/{i}", "file": "x", "pad": "y" * 200})
        if i % 3 == 0:
            written += index.append_once({"key": f"shared/{i}", "file": "x"})
    shared.put(written)


def test_index_appends_from_several_processes_stay_whole_and_unique(tmp_path):
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    queue = ctx.Queue()
    path = tmp_path / INDEX_FILE
    workers = [ctx.Process(target=_append_many, args=(path, w, queue)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert sum(queue.get(timeout=5) for _ in workers) == 4 * 150 + 50
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses: no interleaving
    counts = collections.Counter(r["key"] for r in records)
    assert len(lines) == 650 and max(counts.values()) == 1


def test_a_torn_last_line_is_skipped_and_closed_by_the_next_append(tmp_path):
    path = tmp_path / INDEX_FILE
    path.write_text('{"key":"a","file":"a.npy"}\n{"key":"b","fi')
    index = Index(path)
    assert set(index.read()) == {"a"}
    assert index.append_once({"key": "c", "file": "c.npy"})
    assert not index.append_once({"key": "a", "file": "a.npy"})
    assert set(read_index(tmp_path)) == {"a", "c"}
    assert path.read_text().endswith('{"key":"b","fi\n{"key":"c","file":"c.npy"}\n')


# -- generating ----------------------------------------------------------------------------------------


def test_batch_videos_equal_single_generate_runs_and_are_paired(tmp_path, toy):
    items = items_from_prompts(PROMPTS[:2])
    result = run_batch(items, tmp_path / "out", programs=["origin", "IV-IV"], seeds=2, backbone=toy, format="npy", progress=False, **SMALL)
    assert (result.generated, result.skipped, result.failed) == (8, 0, [])
    jobs = plan_jobs(items, ["origin", "IV-IV"], seeds=2)
    assert_complete(tmp_path / "out", [j.key for j in jobs])
    for job in jobs[:4]:
        frames = np.load(tmp_path / "out" / job.folder / f"{job.name}.npy")
        expected = toy.generate(job.item.prompt, program=job.program, seed=job.seed, progress=False, **SMALL).frames[0]
        np.testing.assert_array_equal(frames, expected)
        manifest = json.loads((tmp_path / "out" / job.folder / f"{job.name}.npy.json").read_text())
        assert (manifest["seed"], manifest["program"], manifest["prompts"]) == (job.seed, str(job.program), [job.item.prompt])
        assert manifest["batch"]["key"] == job.key and manifest["output"] == f"{job.folder}/{job.name}.npy"
    record = read_index(tmp_path / "out")["IV-IV/00002-1"]
    assert record["seed"] == read_index(tmp_path / "out")["origin/00002-1"]["seed"] == derive_seed(0, "00002", 1)


def test_rerun_skips_everything_and_the_plan_may_grow(tmp_path, toy):
    out = tmp_path / "out"
    kwargs = dict(backbone=toy, format="npy", progress=False, **SMALL)
    run_batch(PROMPTS[:2], out, programs=["origin"], **kwargs)
    again = run_batch(PROMPTS[:2], out, programs=["origin"], **kwargs)
    assert (again.generated, again.skipped) == (0, 2)
    grown = run_batch(PROMPTS[:3], out, programs=["origin", "IV-IV"], seeds=2, **kwargs)
    assert (grown.generated, grown.skipped) == (12 - 2, 2)
    assert_complete(out, [j.key for j in plan_jobs(items_from_prompts(PROMPTS[:3]), ["origin", "IV-IV"], seeds=2)])


def test_mp4_output(tmp_path, toy):
    result = run_batch(PROMPTS[:1], tmp_path / "out", programs=["origin"], backbone=toy, progress=False, **SMALL)
    assert result.ok
    assert_complete(tmp_path / "out", ["origin/00001-0"], fmt="mp4")
    assert (tmp_path / "out" / "origin" / "00001-0.mp4").stat().st_size > 0


def test_a_changed_configuration_is_refused_and_new_run_moves_the_old_one_aside(tmp_path):
    out = tmp_path / "out"
    run_batch(PROMPTS[:1], out, programs=["origin"], backbone="toy", format="npy", progress=False, **SMALL)
    with pytest.raises(ConfigMismatch) as info:
        run_batch(PROMPTS[:1], out, programs=["origin"], backbone="toy", format="npy", progress=False, **{**SMALL, "steps": 5})
    assert str(info.value) == (
        f"{out} holds a batch run with another configuration:\n"
        "  generate.steps: was 4, now 5\n"
        "Run again with the same options to resume it, choose another --out, or pass --new-run to move the old "
        f"run aside into {out}/replaced-<time>/ and start a new one."
    )
    result = run_batch(PROMPTS[:1], out, programs=["origin"], backbone="toy", format="npy", progress=False, new_run=True, **{**SMALL, "steps": 5})
    assert result.generated == 1
    (replaced,) = out.glob("replaced-*")
    assert sorted(p.name for p in replaced.iterdir()) == ["index.jsonl", "origin", "run.json"]
    assert json.loads((out / "run.json").read_text())["config"]["generate"]["steps"] == 5


def test_a_prompt_changed_under_an_existing_id_is_refused(tmp_path, toy):
    out = tmp_path / "out"
    run_batch([PromptItem("x", "a bright blob moving right")], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
    with pytest.raises(ConfigMismatch) as info:
        run_batch([PromptItem("x", "a dark blob moving left", "p.csv", 2)], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
    assert str(info.value) == (
        f"{out} already has videos for these ids, made from other prompt text:\n"
        "  id 'x' (p.csv:2): its videos were made from another prompt\n"
        "Give those items new ids, choose another --out, or pass --new-run."
    )


def test_a_write_failure_leaves_the_video_unfinished(tmp_path, toy, monkeypatch):
    import ivmixed.io

    real = ivmixed.io.write_video
    calls = []

    def flaky(frames, path, **kw):
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(frames, path, **kw)

    monkeypatch.setattr(ivmixed.io, "write_video", flaky)
    out = tmp_path / "out"
    result = run_batch(PROMPTS[:2], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
    assert result.failed == [("origin/00002-0", "OSError: No space left on device")] and not result.ok
    assert set(read_index(out)) == {"origin/00001-0"}
    assert sorted(p.name for p in (out / "origin").iterdir()) == ["00001-0.npy", "00001-0.npy.json"]
    assert not (out / ".partial").exists()
    monkeypatch.setattr(ivmixed.io, "write_video", real)
    again = run_batch(PROMPTS[:2], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
    assert (again.generated, again.skipped) == (1, 1)
    assert_complete(out, ["origin/00001-0", "origin/00002-0"])


def test_stops_after_failures_in_a_row(tmp_path, toy, monkeypatch):
    def broken(*args, **kwargs):
        raise FloatingPointError("NaN at step 0")

    monkeypatch.setattr(toy, "generate", broken)
    result = run_batch(PROMPTS, tmp_path / "out", programs=["origin"], backbone=toy, progress=False, max_consecutive_failures=3, **SMALL)
    assert result.stopped_early and len(result.failed) == 3 and result.generated == 0
    assert read_index(tmp_path / "out") == {}


def test_an_unindexed_finished_video_is_adopted_and_a_missing_one_redone(tmp_path, toy):
    out = tmp_path / "out"
    kwargs = dict(programs=["origin", "IV-IV"], backbone=toy, format="npy", progress=False, **SMALL)
    run_batch(PROMPTS[:2], out, **kwargs)
    index = out / INDEX_FILE
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:-1]))  # died between the renames and the index line
    (out / "origin" / "00001-0.npy").unlink()  # a user deleted a video
    again = run_batch(PROMPTS[:2], out, **kwargs)
    assert (again.adopted, again.generated, again.skipped) == (1, 1, 2)
    assert_complete(out, [j.key for j in plan_jobs(items_from_prompts(PROMPTS[:2]), ["origin", "IV-IV"])])


def test_staging_of_dead_processes_is_removed_and_of_live_ones_kept(tmp_path, toy):
    out = tmp_path / "out"
    dead = out / ".partial" / "host-1-abc"
    (dead / "job").mkdir(parents=True)
    (dead / "lock").write_text("")
    (dead / "job" / ".00001-0.x.tmp.npy").write_bytes(b"half a video")
    live = out / ".partial" / "host-2-def"
    live.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(live / "lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        run_batch(PROMPTS[:1], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
        assert not dead.exists() and live.exists()
    finally:
        holder.kill()
        holder.wait()
    run_batch(PROMPTS[:1], out, programs=["origin"], backbone=toy, format="npy", progress=False, **SMALL)
    assert not (out / ".partial").exists()


# -- the command ---------------------------------------------------------------------------------------


def test_cli_batch_dry_run_and_resume(tmp_path, capsys):
    prompts = prompt_file(tmp_path, 3)
    out = tmp_path / "out"
    argv = ["batch", str(prompts), "--programs", "origin,IV-IV", "--seeds", "2", "--out", str(out), "--format", "npy", *SMALL_ARGS]
    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out == f"{out}: 3 items × 2 programs × 2 seeds = 12 videos; 0 finished, 12 to do\n"
    assert main([*argv, "--quiet", "--limit", "2"]) == 0
    import shlex

    # the command this run was started with, also when main() is called in-process (not the host's sys.argv)
    assert json.loads((out / "run.json").read_text())["command"] == shlex.join(["ivmixed", *argv, "--quiet", "--limit", "2"])
    assert main([*argv, "--dry-run", "--shard", "0/2"]) == 0
    assert capsys.readouterr().out.endswith("12 videos; 8 finished, 4 to do (2, 2 per process)\n")
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["generated"], result["skipped"], result["ok"]) == (4, 8, True)


def test_cli_json_prompt_files_with_a_dimension_filter(tmp_path, capsys):
    """A JSON array named by --prompts-format (its suffix says nothing), filtered by --dimension as VBench's full-info
    file is: the ids stay the records' positions in the whole file; a UMT-style array takes its ids from a key."""
    records = [
        {"prompt_en": PROMPTS[0], "dimension": ["color", "scene"]},
        {"prompt_en": PROMPTS[1], "dimension": ["scene"]},
        {"prompt_en": PROMPTS[2], "dimension": ["color"]},
    ]
    info = tmp_path / "full_info.data"
    info.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")  # record n on line n + 1
    out = tmp_path / "out"
    argv = ["batch", str(info), "--prompts-format", "json", "--programs", "origin", "--out", str(out), "--format", "npy", "--quiet", *SMALL_ARGS]
    assert main([*argv, "--dimension", "color"]) == 0
    assert sorted(read_index(out)) == ["origin/00001-0", "origin/00003-0"]
    manifest = json.loads((out / "origin" / "00003-0.npy.json").read_text())
    assert manifest["prompts"] == [PROMPTS[2]] and manifest["batch"]["prompt_source"] == f"{info}:4"
    assert main([*argv, "--dimension", "scene", "--dry-run"]) == 0  # the same folder: item 00001 is finished
    assert capsys.readouterr().out == f"{out}: 2 items × 1 programs × 1 seeds = 2 videos; 1 finished, 1 to do\n"

    assert main([*argv, "--dimension", "motion", "--dry-run"]) == 2
    assert capsys.readouterr().err == f"ivmixed batch: error: {info}: no prompt has the dimension 'motion'; the dimensions are: color, scene\n"
    assert main(["batch", str(info), "--programs", "origin", "--out", str(tmp_path / "o"), "--dimension", "color"]) == 2  # suffix says nothing
    assert "unknown prompt file type '.data'" in capsys.readouterr().err
    text = prompt_file(tmp_path, 2)
    assert main(["batch", str(text), "--programs", "origin", "--out", str(tmp_path / "o"), "--dimension", "color"]) == 2
    assert "a .txt prompt file has no dimension lists" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    umt = tmp_path / "chronomagic_umt.json"
    umt.write_text(json.dumps([{"caption_id": 7, "video": "a.mp4", "caption": PROMPTS[3]}]))
    assert main(["batch", str(umt), "--id-column", "caption_id", "--programs", "origin", "--out", str(tmp_path / "umt"), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["planned"] == 1
    assert main(["batch", str(umt), "--id-column", "caption_id", "--programs", "origin", "--out", str(tmp_path / "umt"), "--format", "npy", "--quiet", *SMALL_ARGS]) == 0
    assert list(read_index(tmp_path / "umt")) == ["origin/7-0"]


def test_cli_prompt_file_errors_come_before_any_model_loads(tmp_path, monkeypatch, capsys):
    from ivmixed.registry import BackboneSpec

    def no_loading(self, **options):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(BackboneSpec, "load", no_loading)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    assert main(["batch", str(bad), "--programs", "origin", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"ivmixed batch: error: {bad}:2: malformed JSON: Expecting ',' delimiter (column 15)\n"
    good = prompt_file(tmp_path, 1)
    assert main(["batch", str(good), "--programs", "origin", "--num-videos", "2", "--out", str(tmp_path / "o")]) == 2
    assert "use --seeds K instead of --num-videos" in capsys.readouterr().err
    assert main(["batch", str(good), "--programs", "origin,IX", "--out", str(tmp_path / "o")]) == 2
    assert "unknown letter 'X'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- crash safety --------------------------------------------------------------------------------------


def _count_lines(path):
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_part_way_then_rerun_leaves_every_video_exactly_once(tmp_path):
    """kill -9 twice at arbitrary moments, re-run: every video once, no temporary files, each index key once."""
    prompts = prompt_file(tmp_path, 30)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ivmixed", "batch", str(prompts), "--programs", "origin,IV-IV", "--seeds", "2",
           "--out", str(out), "--format", "npy", "--quiet", *SMALL_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(6)
    for threshold in (15, 60):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 120
        while _count_lines(out / INDEX_FILE) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))  # land anywhere in a video's generate / write / rename / index cycle
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"the batch ended before it was killed: {proc.stderr.read()}"
        assert 0 < _count_lines(out / INDEX_FILE) < 120
    final = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert final.returncode == 0, final.stderr
    jobs = plan_jobs(items_from_prompts([line for line in prompts.read_text().splitlines()]), ["origin", "IV-IV"], seeds=2)
    assert_complete(out, [j.key for j in jobs])
    toy = ivmixed.load("toy")
    for job in jobs[-3:]:
        expected = toy.generate(job.item.prompt, program=job.program, seed=job.seed, progress=False, **SMALL).frames[0]
        np.testing.assert_array_equal(np.load(out / job.folder / f"{job.name}.npy"), expected)
