"""Time the program parser, ``cost`` and ``explain`` on long and hostile program texts.

Each case is parsed (the parse cache is cleared first), then, when it parses, costed and explained at N steps.
The figures are the best of ``--repeat`` runs, in milliseconds; a refused text shows the start of its reason.

    python benchmarks/parse.py
    python benchmarks/parse.py --steps 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import time

from ivmixed.program import MAX_CLAUSES, MAX_PROGRAM_CHARS, InvalidProgram, clear_parse_cache, explain, parse


def cases() -> dict[str, str]:
    return {
        "IV-IV": "IV-IV",
        "released VideoCrafter2 recipe": "IV-IV+VV-VV@i%3=2",
        "374-character periods": "+".join(f"IV-IV@i%{k}={k - 1}" for k in range(2, 30)),
        "5,000 nines as a step index": "IV-IV@" + "9" * 5000 + "..1",
        "5,000 nines as a percentage": "VV-VV@" + "9" * 5000 + "%",
        f"{MAX_CLAUSES} clauses at 66.7%": "+".join(["VV-VV@66.7%"] * MAX_CLAUSES),
        f"{MAX_CLAUSES} one-step windows": "+".join(f"IV-IV@{i}..{i}" for i in range(MAX_CLAUSES)),
        f"{MAX_PROGRAM_CHARS} characters, {MAX_CLAUSES} clauses": (
            "+".join(["IV-IV:nf@i%1000=999"] * (MAX_CLAUSES - 1)) + "+II-II"
        ).ljust(MAX_PROGRAM_CHARS),
        "100,000 characters of IV-IV+": "IV-IV+" * 16666 + "IV-IV",
        "100,000 letters": "I" * 100_000,
        "100,000 spaces": "IV-IV" + " " * 100_000,
    }


def best(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="N for cost and explain (default 1000)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"{'case':<42} {'chars':>7} {'parse ms':>9} {'cost ms':>8} {'explain ms':>10}  outcome")
    for name, text in cases().items():

        def parse_fresh():
            clear_parse_cache()
            try:
                return parse(text)
            except InvalidProgram as error:
                return error

        parse_ms = best(args.repeat, parse_fresh)
        outcome = parse_fresh()
        if isinstance(outcome, InvalidProgram):
            print(f"{name:<42} {len(text):>7} {parse_ms:>9.2f} {'-':>8} {'-':>10}  refused: {outcome.reason[:60]}")
            continue
        try:
            outcome.validate(args.steps)
        except InvalidProgram as error:
            print(f"{name:<42} {len(text):>7} {parse_ms:>9.2f} {'-':>8} {'-':>10}  not for N={args.steps}: {error.reason[:40]}")
            continue
        program = outcome

        def cost_fresh():
            program.__dict__.pop("_by_step", None)  # the per-N table is cached: time building it
            program.cost(args.steps, args.frames)

        def explain_fresh():
            program.__dict__.pop("_by_step", None)
            explain(program, args.steps, args.frames)

        cost_ms, explain_ms = best(args.repeat, cost_fresh), best(args.repeat, explain_fresh)
        print(f"{name:<42} {len(text):>7} {parse_ms:>9.2f} {cost_ms:>8.2f} {explain_ms:>10.2f}  {len(program.clauses)} clauses")


if __name__ == "__main__":
    main()
