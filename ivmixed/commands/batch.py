"""``ivmixed batch``: every prompt of a file × every program × K seeds, one video each, resumable and shardable.

Run it again to resume; launch it with ``accelerate launch -m ivmixed batch …`` or ``torchrun -m ivmixed batch …``
to split the work over several processes / GPUs. See docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

from ..batch import BATCH_FORMATS, SEED_MODES, batch_status, run_batch
from ..prompts import FORMATS, read_prompts
from ._common import add_backbone_arguments, add_sampling_arguments, backbone_options, parse_programs, precheck, resolve_spec, sampling_kwargs

EPILOG = """examples:
  ivmixed batch prompts.txt --programs origin,IV-IV --seeds 3 --out runs/demo
  ivmixed batch Captions_ChronoMagic-Bench.csv --prompt-column name --id-column videoid \\
      --backbone animatediff --programs origin,IV-IV --out runs/chronomagic
  accelerate launch --multi_gpu --num_processes 8 -m ivmixed batch prompts.csv --programs origin,IV-IV --out runs/demo
  torchrun --nproc_per_node 8 -m ivmixed batch prompts.csv --programs origin,IV-IV --out runs/demo
"""


def _shard(text: str) -> tuple[int, int]:
    rank, sep, world = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return int(rank), int(world)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (process I of N, from 0), got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="generate a prompt file × programs × seeds, resumable, over several processes/GPUs",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "prompts", metavar="PROMPTS", help="prompt file: .txt (one prompt a line), .csv, .tsv, .jsonl (one object a line) or .json (an array)"
    )
    g = p.add_argument_group("prompt file")
    g.add_argument(
        "--prompt-column", metavar="COL", help="column/key of the prompt (default: prompt, caption, text or sentence; in JSON also prompt_en)"
    )
    g.add_argument("--id-column", metavar="COL", help="column/key of the item id that names the files (default: item number 00001, …)")
    g.add_argument(
        "--prompts-format", choices=tuple(dict.fromkeys(FORMATS.values())), help="format of PROMPTS when its suffix does not say"
    )
    g.add_argument(
        "--dimension",
        metavar="NAME",
        help="JSON prompt files: only the records whose 'dimension' list holds NAME (VBench_full_info.json); ids stay their positions in the whole file",
    )
    g.add_argument("--limit", type=int, metavar="N", help="only the first N prompt items")
    g = p.add_argument_group("videos")
    g.add_argument("--programs", required=True, metavar="P1,P2,…", help="programs, comma-separated, e.g. origin,IV-IV")
    g.add_argument("--seeds", type=int, default=1, metavar="K", help="videos per item and program (default: 1)")
    g.add_argument("--seed", type=int, default=0, help="base seed of the seed rule (default: 0)")
    g.add_argument(
        "--seed-mode",
        choices=SEED_MODES,
        default="item",
        help="item: seed = sha256('SEED/ID/K')[:8 hex], own noise per item (default); shared: seed = SEED + K for every item",
    )
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created; re-run the same command to resume)")
    g.add_argument("--format", choices=BATCH_FORMATS, default="mp4", help="video file type (default: mp4; npy keeps exact float frames)")
    g.add_argument("--new-run", action="store_true", help="DIR holds a run with another configuration: move it aside into DIR/replaced-<time>/ and start over")
    g.add_argument("--shard", type=_shard, metavar="I/N", help="be process I of N (default: from accelerate/torchrun, or RANK/WORLD_SIZE)")
    g.add_argument("--dry-run", action="store_true", help="show how many videos are planned, finished and to do, after the checks of a real run; load and write nothing")
    g.add_argument("--json", action="store_true", help="print the result of this process as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--preset", help="a named preset of the backbone (explicit options win)")
    add_sampling_arguments(p, program=False)
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # everything that can be checked without a model is checked first (prompt file, programs, sizes, steps, preset,
    # prompts, the output folder, the configuration of a run already in it); a refused run loads and writes nothing
    if args.num_videos != 1:
        raise ValueError("batch makes one video per (item, program, seed): use --seeds K instead of --num-videos")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    spec = resolve_spec(args.backbone)
    programs = parse_programs(args.programs)
    precheck(spec, args, programs)
    items = read_prompts(
        args.prompts, prompt_column=args.prompt_column, id_column=args.id_column, format=args.prompts_format, dimension=args.dimension
    )
    common = dict(
        programs=programs, seeds=args.seeds, seed=args.seed, seed_mode=args.seed_mode, format=args.format, limit=args.limit,
        backbone=args.backbone, backbone_options=backbone_options(args), new_run=args.new_run, shard=args.shard,
        preset=args.preset, **sampling_kwargs(args, spec),
    )

    if args.dry_run:
        # the same checks as the real run: a run it would refuse (another configuration, …) is refused here too
        status = batch_status(items, args.out, **common)
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            per_process = status["to_do_per_process"]
            print(
                f"{status['out_dir']}: {status['items']} items × {len(status['programs'])} programs × {status['seeds']} seeds = "
                f"{status['planned']} videos; {status['finished']} finished, {status['to_do']} to do"
                + (f" ({', '.join(map(str, per_process))} per process)" if len(per_process) > 1 else "")
            )
            if status["replaces_old_run"]:
                print(f"--new-run: the previous run would be moved aside into {status['out_dir']}/replaced-<time>/")
        return 0

    if not args.json and not args.quiet:
        logging.getLogger("ivmixed.batch").setLevel(logging.INFO)
    result = run_batch(
        items,
        args.out,
        progress=not args.quiet and not args.json,
        command=shlex.join(["ivmixed", *getattr(args, "argv", sys.argv[1:])]),
        **common,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        who = f"process {result.shard.rank} of {result.shard.world_size}: " if result.shard.world_size > 1 else ""
        print(
            f"{who}{result.generated} generated, {result.adopted} recovered, {result.skipped} already finished, "
            + (f"{result.by_others} made by another process, " if result.by_others else "")
            + f"{len(result.failed)} failed, of {result.assigned} videos"
            + (f" (plan: {result.planned})" if result.assigned != result.planned else "")
            + f" in {result.seconds:.1f}s"
            + (f", {result.videos_per_second:.2f} videos/s" if result.generated else "")
            + f" -> {result.out_dir}",
            file=sys.stderr,
        )
        for key, error in result.failed[:10]:
            print(f"  failed {key}: {error}", file=sys.stderr)
        if result.stopped_early:
            print("  stopped after too many failures in a row; fix the cause and run the same command again", file=sys.stderr)
    return 0 if result.ok else 1
