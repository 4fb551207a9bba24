"""``ivmixed batch`` under hostile conditions on the toy world: two plain processes on one folder, and Ctrl-C.

1. **Two processes, no --shard.** Two ``python -m ivmixed batch`` commands are started at the same moment on
   the same output folder (a plan of ITEMS × 2 programs, .mp4). Each prints its result as JSON; the figure is
   the number of videos the two generated together, against the plan (the plan once is right; twice the plan
   is all work duplicated), and the folder is checked (each video indexed once, no partial file).
2. **SIGINT at a random moment.** An .mp4 batch gets one SIGINT at a random time once it has made a few
   videos (``--signal TERM`` sends SIGTERM). Honoured means: exit status 130 (143), the one-line message, the
   run stopped before the end of its plan, and no staging or temporary file left. Stderr lines with
   ``Exception ignored`` (an interrupt swallowed while ffmpeg's subprocess started) are counted too.
3. **SIGINT inside the fork of ffmpeg.** The same batch with an at-fork hook that raises SIGINT in the
   parent right after the first fork once the command's handlers are in place, so the KeyboardInterrupt is
   always swallowed (``Exception ignored in ...``): honoured as above.

    python benchmarks/batch_hostile.py                      # 3 × two processes, 21 SIGINTs, 5 forced swallows
    python benchmarks/batch_hostile.py --pairs 0 --sigints 10 --signal TERM
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOY_PROMPTS = [f"a {look} blob moving {way}" for look in ("bright", "dark") for way in ("left", "right", "up", "down")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

FORK_SIGINT = """
import os, signal, sys
from ivmixed import interrupts
fired = []
def after_fork():
    if not fired and signal.getsignal(signal.SIGINT) is interrupts._handler:
        fired.append(1)
        signal.raise_signal(signal.SIGINT)
os.register_at_fork(after_in_parent=after_fork)
from ivmixed.cli import main
sys.exit(main(sys.argv[1:]))
"""


def prompts_file(folder: Path, items: int) -> Path:
    path = folder / "prompts.txt"
    path.write_text("".join(f"{TOY_PROMPTS[i % len(TOY_PROMPTS)]}\n" for i in range(items)))
    return path


def batch_args(prompts: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return ["batch", str(prompts), "--programs", "origin,IV-IV", "--out", str(out), "--format", "mp4",
            "--steps", str(args.steps), "--frames", str(args.frames), "--height", str(args.size), "--width", str(args.size)]


def index_lines(out: Path) -> int:
    try:
        return (out / "index.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def leftovers(out: Path) -> int:
    return sum(1 for p in out.rglob("*") if ".tmp" in p.name or ".partial" in p.parts or p.name == ".partial")


def two_processes(work: Path, args: argparse.Namespace, trial: int) -> dict:
    prompts = prompts_file(work, args.items)
    out = work / f"pair-{trial}"
    cmd = [sys.executable, "-m", "ivmixed", *batch_args(prompts, out, args), "--json"]
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=1800) for p in procs]
    seconds = time.perf_counter() - started
    generated = [json.loads(o)["generated"] if p.returncode == 0 else None for p, (o, _) in zip(procs, outputs)]
    keys = collections.Counter(json.loads(line)["key"] for line in (out / "index.jsonl").read_text().splitlines())
    planned = 2 * args.items
    return {
        "planned": planned,
        "generated": generated,
        "generated_total": sum(g or 0 for g in generated),
        "exit": [p.returncode for p in procs],
        "indexed": len(keys),
        "indexed_twice": sum(1 for c in keys.values() if c > 1),
        "partial_files": leftovers(out),
        "seconds": round(seconds, 1),
    }


def interrupted(work: Path, args: argparse.Namespace, trial: int, rng: random.Random, forced: bool) -> dict:
    prompts = prompts_file(work, args.items)
    out = work / f"{'fork' if forced else 'sig'}-{trial}"
    batch = batch_args(prompts, out, args) + ["--quiet"]
    cmd = [sys.executable, "-c", FORK_SIGINT, *batch] if forced else [sys.executable, "-m", "ivmixed", *batch]
    sig = signal.SIGINT if forced or args.signal == "INT" else signal.SIGTERM
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sent = False
    if not forced:
        threshold = rng.randint(1, max(1, args.items // 2))
        deadline = time.monotonic() + 600
        while index_lines(out) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.05))  # anywhere in a video's generate / encode (ffmpeg start) / rename / index cycle
        if proc.poll() is None:
            proc.send_signal(sig)
            sent = True
    _, err = proc.communicate(timeout=600)
    name = "interrupted (Ctrl-C)" if sig == signal.SIGINT else "terminated (SIGTERM)"
    lines = index_lines(out)
    honoured = (
        (forced or sent)
        and proc.returncode == 128 + sig
        and err.rstrip().endswith(f"ivmixed batch: {name}")
        and lines < 2 * args.items
        and leftovers(out) == 0
    )
    return {"sent": sent or forced, "exit": proc.returncode, "indexed": lines, "swallowed": err.count("Exception ignored"),
            "leftovers": leftovers(out), "honoured": bool(honoured)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=40, help="prompt items (the plan is 2 × items videos; default 40)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=16, help="height and width (default 16)")
    parser.add_argument("--pairs", type=int, default=3, help="trials of two processes on one folder (default 3)")
    parser.add_argument("--sigints", type=int, default=21, help="signals at random moments (default 21)")
    parser.add_argument("--signal", choices=["INT", "TERM"], default="INT")
    parser.add_argument("--forced", type=int, default=5, help="SIGINTs raised inside the fork of ffmpeg (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ivmixed-hostile-") as tmp:
        work = Path(tmp)
        if args.pairs:
            print(f"two plain processes on one folder, plan {2 * args.items} videos (.mp4):")
            totals = []
            for trial in range(args.pairs):
                r = two_processes(work, args, trial)
                totals.append(r["generated_total"])
                print(f"  trial {trial + 1}: generated {r['generated'][0]} + {r['generated'][1]} = {r['generated_total']} for a plan of "
                      f"{r['planned']}; exit {r['exit']}; indexed {r['indexed']} (twice: {r['indexed_twice']}); "
                      f"partial files {r['partial_files']}; {r['seconds']} s")
            print(f"  videos generated for the plan of {2 * args.items}: {', '.join(map(str, totals))}")
        for forced, count in ((False, args.sigints), (True, args.forced)):
            if not count:
                continue
            what = "SIGINT raised inside the fork of ffmpeg" if forced else f"SIG{args.signal} at a random moment"
            print(f"{what}, {count} trials:")
            results = []
            for trial in range(count):
                r = interrupted(work, args, trial, rng, forced)
                results.append(r)
                print(f"  trial {trial + 1}: exit {r['exit']}, {r['indexed']} indexed, swallowed {r['swallowed']}, "
                      f"leftovers {r['leftovers']}: {'honoured' if r['honoured'] else 'NOT honoured'}")
            sent = [r for r in results if r["sent"]]
            print(f"  honoured {sum(r['honoured'] for r in sent)} of {len(sent)} "
                  f"(interrupts swallowed on the way: {sum(1 for r in sent if r['swallowed'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
