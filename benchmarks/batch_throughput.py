"""Throughput of ``ivmixed batch`` on the toy world, and the time a kill -9 followed by a re-run costs.

Three measurements on the same plan (N prompt items × programs × seeds), each in a fresh folder:

1. one uninterrupted run (wall time of the whole command, start-up included; items/s and videos/s), then the
   same command on the finished folder (what checking the finished videos costs);
2. the same run killed with SIGKILL once a fraction of the videos is indexed, then run again: the time lost is
   (killed run + resumed run) − uninterrupted run, and the folder is checked (every video once, no partial file);
3. optionally the same plan over two processes (``torchrun --nproc_per_node 2``, gloo).

    python benchmarks/batch_throughput.py --items 1000
    python benchmarks/batch_throughput.py --items 200 --steps 10 --frames 8 --height 16 --width 16 --format mp4
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOY_PROMPTS = [f"a {look} blob moving {way}" for look in ("bright", "dark") for way in ("left", "right", "up", "down")]


def batch_command(prompts: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        "batch", str(prompts), "--programs", args.programs, "--seeds", str(args.seeds), "--out", str(out),
        "--format", args.format, "--steps", str(args.steps), "--frames", str(args.frames),
        "--height", str(args.height), "--width", str(args.width), "--quiet",
    ]


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def check(out: Path, planned: int) -> dict:
    keys = collections.Counter(json.loads(line)["key"] for line in (out / "index.jsonl").read_text().splitlines())
    videos = [p for p in out.glob(f"*/*.*") if p.suffix != ".json" and not p.name.startswith(".")]
    partial = [p for p in out.rglob("*") if ".partial" in p.parts or ".tmp" in p.name]
    return {
        "indexed": len(keys),
        "indexed_twice": sum(1 for c in keys.values() if c > 1),
        "videos": len(videos),
        "partial_files": len(partial),
        "complete": len(keys) == planned == len(videos) and not partial and max(keys.values()) == 1,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--programs", default="origin,IV-IV")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--format", default="npy", choices=["npy", "gif", "mp4"])
    p.add_argument("--kill-at", type=float, default=0.5, help="kill once this fraction of the videos is indexed")
    p.add_argument("--two-processes", action="store_true", help="also run the plan over two processes with torchrun")
    p.add_argument("--keep", help="keep the output folders under this folder")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="ivmixed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.txt"
    prompts.write_text("".join(f"{TOY_PROMPTS[i % len(TOY_PROMPTS)]}\n" for i in range(args.items)))
    planned = args.items * len(args.programs.split(",")) * args.seeds
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cli = [sys.executable, "-m", "ivmixed"]
    report: dict = {"items": args.items, "videos": planned, "settings": vars(args)}

    # 1. uninterrupted
    out = work / "full"
    t0 = time.perf_counter()
    subprocess.run([*cli, *batch_command(prompts, out, args)], check=True, env=env, stderr=subprocess.DEVNULL)
    full = time.perf_counter() - t0
    report["uninterrupted"] = {"seconds": round(full, 2), "items_per_s": round(args.items / full, 2), "videos_per_s": round(planned / full, 2), **check(out, planned)}
    t0 = time.perf_counter()  # the same command on the finished folder: the cost of checking what is done
    subprocess.run([*cli, *batch_command(prompts, out, args)], check=True, env=env, stderr=subprocess.DEVNULL)
    report["uninterrupted"]["rerun_when_finished_s"] = round(time.perf_counter() - t0, 2)

    # 2. killed part-way, then resumed
    out = work / "killed"
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cli, *batch_command(prompts, out, args)], env=env, stderr=subprocess.DEVNULL)
    while lines(out / "index.jsonl") < args.kill_at * planned and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = time.perf_counter() - t0
    done_at_kill = lines(out / "index.jsonl")
    t0 = time.perf_counter()
    subprocess.run([*cli, *batch_command(prompts, out, args)], check=True, env=env, stderr=subprocess.DEVNULL)
    second = time.perf_counter() - t0
    report["kill_and_resume"] = {
        "killed_after_s": round(first, 2),
        "videos_at_kill": done_at_kill,
        "resume_s": round(second, 2),
        "total_s": round(first + second, 2),
        "lost_s": round(first + second - full, 2),
        **check(out, planned),
    }

    # 3. two processes
    if args.two_processes:
        out = work / "two"
        torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
        t0 = time.perf_counter()
        subprocess.run([torchrun, "--nproc_per_node", "2", "--standalone", "-m", "ivmixed", *batch_command(prompts, out, args)],
                       check=True, env=env, stderr=subprocess.DEVNULL)
        two = time.perf_counter() - t0
        ranks = collections.Counter(json.loads(line)["rank"] for line in (out / "index.jsonl").read_text().splitlines())
        report["two_processes"] = {"seconds": round(two, 2), "items_per_s": round(args.items / two, 2), "videos_per_rank": dict(ranks), **check(out, planned)}

    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    u, k = report["uninterrupted"], report["kill_and_resume"]
    size = f"{args.frames}×{args.height}×{args.width}, {args.steps} steps, .{args.format}"
    print(f"toy batch: {args.items} items × {args.programs} × {args.seeds} seed(s) = {planned} videos ({size})")
    print(f"  uninterrupted: {u['seconds']:.1f} s, {u['items_per_s']:.1f} items/s, {u['videos_per_s']:.1f} videos/s, complete: {u['complete']}")
    print(f"  the same command again on the finished folder: {u['rerun_when_finished_s']:.1f} s (nothing to do, no model loaded)")
    print(
        f"  killed at {k['videos_at_kill']} videos after {k['killed_after_s']:.1f} s, resumed in {k['resume_s']:.1f} s: "
        f"{k['lost_s']:+.1f} s lost, complete: {k['complete']} (indexed twice: {k['indexed_twice']}, partial files: {k['partial_files']})"
    )
    if "two_processes" in report:
        t = report["two_processes"]
        print(f"  two processes: {t['seconds']:.1f} s, {t['items_per_s']:.1f} items/s, videos per rank {t['videos_per_rank']}, complete: {t['complete']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
