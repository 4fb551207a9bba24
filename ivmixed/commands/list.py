"""``ivmixed list``: the registered backbones, where each comes from, and whether it can run here."""

from __future__ import annotations

import argparse
import json

from ..registry import discover


def register(sub) -> None:
    p = sub.add_parser("list", help="list registered backbones and whether they can run here", description=__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--metrics", action="store_true", help="list the registered metrics (for `ivmixed eval`) instead")
    p.set_defaults(run=run)


def collect() -> list[dict]:
    found, broken = discover()
    rows = []
    for name, spec in found.items():
        rows.append(
            {
                "name": name,
                "distribution": spec.distribution,
                "status": "ok",
                "summary": spec.summary,
                "roles": spec.roles,
                "default_models": spec.default_models,
                "conflict": spec.conflict,
                **spec.availability(),
            }
        )
    for b in broken:
        rows.append({"name": b.name, "distribution": b.distribution, "status": "broken", "entry_point": b.value, "error": b.error, "can_run": False})
    return sorted(rows, key=lambda r: r["name"])


def run(args: argparse.Namespace) -> int:
    if getattr(args, "metrics", False):
        from . import _metrics_list

        return _metrics_list.run(args.json)
    rows = collect()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        head = f"{r['name']:<14} from {r['distribution'] or '?'}"
        if r["status"] == "broken":
            print(f"{head}  BROKEN: {r['error']}")
            continue
        verdict = "can run here" if r["can_run"] else "cannot run here"
        reasons = []
        if r["requirements_missing"]:
            reasons.append("missing " + ", ".join(r["requirements_missing"]))
        missing_weights = [k for k, ok in r["weights_local"].items() if not ok]
        if missing_weights:
            reasons.append("weights not found locally: " + ", ".join(f"{k}={r['default_models'][k]}" for k in missing_weights))
        if r.get("note"):
            reasons.append(r["note"])
        print(f"{head}  [{verdict}{' — ' + '; '.join(reasons) if reasons else ''}]")
        if r["summary"]:
            print(f"    {r['summary']}")
        if r["conflict"]:
            print(f"    NAME CONFLICT: {r['conflict']}")
        for role, what in r["roles"].items():
            print(f"    {role}: {what}")
    return 0
