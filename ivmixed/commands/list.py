"""``ivmixed list``: the registered backbones, where each comes from, and whether it can run here.

``ivmixed list --options BACKBONE`` lists the options of one backbone (``-o NAME=VALUE``): type, allowed values,
default and meaning, read from its spec without loading it.
"""

from __future__ import annotations

import argparse
import json

from ..registry import discover


def register(sub) -> None:
    p = sub.add_parser("list", help="list registered backbones and whether they can run here", description=__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--metrics", action="store_true", help="list the registered metrics (for `ivmixed eval`) instead")
    p.add_argument("--options", metavar="BACKBONE", help="list the options (-o NAME=VALUE) of one backbone instead")
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


def option_rows(name: str) -> tuple[list[dict], list[str] | None]:
    """The declared options of backbone ``name``; for a backbone that declares none, the keyword options its factory takes.

    The second item is None when the factory cannot be inspected because its requirements are missing here.
    """
    import inspect

    from ..registry import get_spec

    spec = get_spec(name)
    rows = [
        {"name": o.name, "type": o.type, "default": o.default, "allowed": o.describe(), "help": o.help}
        for o in spec.options
    ]
    undeclared: list[str] | None = []
    if spec.options:  # the table is the answer; nothing is imported
        return rows, undeclared
    try:
        spec._require()
        params = inspect.signature(spec.resolve_factory()).parameters
    except (ImportError, TypeError, ValueError, AttributeError):
        undeclared = None
    else:
        declared = {o.name for o in spec.options}
        undeclared = [
            n for n, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) and n not in declared
        ]
    return rows, undeclared


def run_options(name: str, as_json: bool) -> int:
    rows, undeclared = option_rows(name)
    if as_json:
        print(json.dumps({"backbone": name, "options": rows, "undeclared": undeclared}, indent=2, default=str))
        return 0
    if rows:
        print(f"options of backbone '{name}' (give them as -o NAME=VALUE; checked before anything loads):")
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            default = "none" if r["default"] is None else r["default"]
            print(f"  {r['name']:<{width}}  {r['help']}")
            print(f"  {'':<{width}}  {r['allowed']}; default {default}")
    else:
        print(f"backbone '{name}' declares no options (nothing is checked before it loads)")
    if undeclared:
        print(f"its factory takes: {', '.join(undeclared)}")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "options", None):
        return run_options(args.options, args.json)
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
