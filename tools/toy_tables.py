"""Prints the tables of docs/toy.md for one toy world, as Markdown: the paper's forms in both phase orders (with a
row of exact samples of the true world), the zigzag-guidance sweep with the inversion sign flipped, the attribution
of IV-IV's gain to windows of steps, and which of the paper's qualitative claims the world reproduces.

    python tools/toy_tables.py --world learned                 # 8 seeds, 50 steps: a few minutes on 2 CPU cores
    python tools/toy_tables.py --world default -o frames=9 --seeds 4

Every number comes from :func:`ivmixed.sweep.sweep` / :func:`ivmixed.sweep.attribution` on the same seeds.
"""

from __future__ import annotations

import argparse
import ast
import time

import ivmixed
from ivmixed.schedules import GuidanceTable, Ramp
from ivmixed.sweep import PAPER_FORMS, TRUE_ROW, attribution, format_attribution, format_table, summarise, sweep

R_FORMS = ("R-I", "RR-II", "R-V", "RR-VV")
DETERMINISTIC = ("I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV")
GAMMAS = (0.0, 2.0, 4.0, 8.0)


def _table(gamma: float, sign: int) -> GuidanceTable:
    go, back = Ramp("constant", (gamma,)), Ramp("constant", (sign * gamma,))
    return GuidanceTable(i_go=go, i_back=back, v_go=go, v_back=back)


def _claims(rows: list[dict], order: str) -> list[str]:
    by = {r["program"].split(":")[0]: r for r in rows}
    origin = by["origin"]

    def better(a: dict, b: dict, metric: str) -> str:
        lower = metric != "coherence"
        (ma, ca), (mb, cb) = (a[metric], a[f"{metric}_ci95"] or 0), (b[metric], b[f"{metric}_ci95"] or 0)
        if (ma + ca < mb - cb) if lower else (ma - ca > mb + cb):
            return "yes"
        if (ma - ca > mb + cb) if lower else (ma + ca < mb - cb):
            return "no (the opposite)"
        return "no (within the intervals)"

    out = [f"*{order}*, judged on frame_error / energy_distance (yes = the intervals do not overlap):"]
    for metric in ("frame_error", "energy_distance"):
        if origin.get(metric) is None:
            continue
        worse = [p for p in R_FORMS if better(origin, by[p], metric) == "yes"]
        out.append(f"- R-forms worse than origin by {metric}: {len(worse)} of {len(R_FORMS)} ({', '.join(worse) or 'none'})")
        out.append(f"- IV-IV better than I-I by {metric}: {better(by['IV-IV'], by['I-I'], metric)}; "
                   f"than V-V: {better(by['IV-IV'], by['V-V'], metric)}")
        best_r = min(R_FORMS, key=lambda p: by[p][metric])
        beaten = [p for p in DETERMINISTIC if better(by[p], by[best_r], metric) == "yes"]
        out.append(f"- deterministic forms better than the best R-form ({best_r}) by {metric}: "
                   f"{len(beaten)} of {len(DETERMINISTIC)} ({', '.join(beaten) or 'none'})")
    out.append(f"- IV-IV on every step loses coherence against origin: {better(origin, by['IV-IV'], 'coherence')} "
               f"(origin {origin['coherence']:.3f}, IV-IV {by['IV-IV']['coherence']:.3f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="learned")
    ap.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="any other toy option")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sections", default="forms,nf,guidance,attribution")
    args = ap.parse_args()
    options = {k: ast.literal_eval(v) if v[:1].isdigit() or v[:1] in "-." else v for k, v in (o.split("=", 1) for o in args.option)}
    bb = ivmixed.load("toy", world=args.world, **options)
    sections = args.sections.split(",")
    seeds, steps = args.seeds, args.steps
    started = time.perf_counter()
    print(f"## world `{args.world}`{''.join(f', {k}={v}' for k, v in options.items())}: {seeds} seeds x {len(bb.prompts)} prompts, {steps} steps\n")
    print("world parameters:", {k: v for k, v in bb.describe()["world_parameters"].items()}, "\n")
    claims = []
    if "forms" in sections:
        rows = sweep(bb, PAPER_FORMS, seeds, steps=steps, progress=False, true_samples=True)
        print("### paper's forms, denoise-first\n")
        print(format_table(rows, markdown=True), "\n")
        claims += _claims(rows[1:], "denoise-first")
        forms = rows
    if "nf" in sections:
        nf = [f"{p}:nf" for p in PAPER_FORMS if p != "origin"]
        rows = sweep(bb, ["origin", *nf], seeds, steps=steps, progress=False)
        print("### paper's forms, noise-first\n")
        print(format_table(rows, markdown=True), "\n")
        claims += _claims(rows, "noise-first")
    if "guidance" in sections:
        print("### zigzag guidance γ (go +γ, back −γ as released; 'flipped': back +γ)\n")
        runs: dict[str, dict[int, dict]] = {}
        rows = []
        for program in ("IV-IV", "I-I"):
            for gamma in GAMMAS:
                for sign in ((-1, 1) if gamma else (-1,)):
                    label = f"{program} γ={gamma:g}" + (" flipped" if sign == 1 else "")
                    rec = lambda r, label=label: runs.setdefault(label, {}).__setitem__(r["seed"], r["metrics"])  # noqa: E731
                    # GuidanceTable's back entry is the scale the inversion negates: +γ there is the released −γ
                    row = sweep(bb, [program], seeds, steps=steps, progress=False, zigzag=_table(gamma, -sign), on_run=rec)[0]
                    row["program"] = label
                    rows.append(row)
        print(format_table(rows, markdown=True), "\n")
        print("paired differences over the seeds against the released γ=4 of the same program (mean ± 95% interval):\n")
        print("| setting | Δ frame_error | Δ prompt_accuracy | Δ coherence |\n|---|---|---|---|")
        for label, per_seed in runs.items():
            ref = runs[f"{label.split()[0]} γ=4"]
            cells = []
            for m in ("frame_error", "prompt_accuracy", "coherence"):
                mean, ci = summarise([per_seed[s][m] - ref[s][m] for s in per_seed])
                cells.append(f"{mean:+.4f} ± {ci:.4f}")
            print(f"| {label} | " + " | ".join(cells) + " |")
        print()
    if "attribution" in sections:
        for program in ("IV-IV", "VV-VV"):
            rows = attribution(bb, program, seeds, steps=steps, progress=False)
            print(f"### attribution of {program}'s gain\n")
            print(format_attribution(rows, markdown=True), "\n")
    if claims:
        print("### the paper's qualitative claims\n")
        print("\n".join(claims), "\n")
    print(f"(tables computed in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
