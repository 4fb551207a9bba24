"""``ivmixed list --metrics``: the registered metrics, where each comes from, and whether it can run here."""

from __future__ import annotations

import json

from ..metrics import discover_metrics


def collect() -> list[dict]:
    found, broken = discover_metrics()
    rows = []
    for name, spec in found.items():
        rows.append(
            {
                "name": name,
                "distribution": spec.distribution,
                "status": "ok",
                "summary": spec.summary,
                "higher_is_better": spec.higher_is_better,
                "default_model": spec.default_model,
                **spec.availability(),
            }
        )
    for b in broken:
        rows.append({"name": b.name, "distribution": b.distribution, "status": "broken", "entry_point": b.value, "error": b.error, "can_run": False})
    return sorted(rows, key=lambda r: r["name"])


def run(as_json: bool) -> int:
    rows = collect()
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        head = f"{r['name']:<18} from {r['distribution'] or '?'}"
        if r["status"] == "broken":
            print(f"{head}  BROKEN: {r['error']}")
            continue
        reasons = []
        if r["requirements_missing"]:
            reasons.append("missing " + ", ".join(r["requirements_missing"]))
        if not r["weights_local"]:
            reasons.append(f"weights not found locally: {r['default_model']} (give model=PATH with --metric-option)")
        verdict = "can run here" if r["can_run"] else "cannot run here with its defaults"
        print(f"{head}  [{verdict}{' — ' + '; '.join(reasons) if reasons else ''}]")
        direction = {True: "higher is better", False: "lower is better"}.get(r["higher_is_better"], "no better direction")
        print(f"    {r['summary']} ({direction})")
        if r["default_model"]:
            print(f"    model: {r['default_model']}")
    return 0
