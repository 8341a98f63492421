"""Did the run meet its targets? One verdict per target: the goal, the figure reached, met or not, and by how much.

Example:
    >>> from leanml.compress.budget import Budget
    >>> from leanml.compress.recipe import Targets
    >>> rows = [{"stage": "train", "accuracy": 0.90}, {"stage": "verify", "accuracy": 0.895, "flash_bytes": None}]
    >>> v = verdicts(rows, {}, Budget(None, None, None), Targets(max_accuracy_drop=1.0), [])
    >>> v[0]["met"], v[0]["reached"]
    (True, 0.5)
"""

from __future__ import annotations

from typing import Any

from leanml.compress.budget import Budget
from leanml.compress.recipe import Targets


def _last(rows: list[dict[str, Any]], key: str, stages: tuple[str, ...]) -> float | None:
    for row in reversed(rows):
        if row.get("stage") in stages and row.get(key) is not None:
            return float(row[key])
    return None


def verdicts(
    rows: list[dict[str, Any]], int8: dict[str, Any], budget: Budget, targets: Targets, misses: list[str]
) -> list[dict[str, Any]]:
    """Compare the final figures (the deployed C where there is one) with every target that was set."""
    out: list[dict[str, Any]] = []
    final = ("deploy", "quantize")

    def add(target: str, goal: float | None, reached: float | None, unit: str, scale: float = 1.0) -> None:
        if goal is None:
            return
        if reached is None:
            out.append(
                {
                    "target": target,
                    "goal": goal / scale,
                    "reached": None,
                    "met": False,
                    "note": "not measured: the recipe has no stage that measures it",
                }
            )
            return
        met = reached <= goal
        gap = reached - goal
        note = (
            f"met with {-gap / scale:.2f} {unit} to spare"
            if met
            else f"missed by {gap / scale:.2f} {unit} ({gap / goal:+.1%}); "
            f"nearest point reached: {reached / scale:.2f} {unit}"
        )
        out.append(
            {
                "target": target,
                "goal": round(goal / scale, 4),
                "reached": round(reached / scale, 4),
                "met": met,
                "note": note,
            }
        )

    add("flash", budget.flash_bytes, _last(rows, "flash_bytes", final), "KiB", 1024.0)
    add("peak SRAM", budget.sram_bytes, _last(rows, "sram_bytes", final), "KiB", 1024.0)
    add("latency (C, batch 1)", budget.latency_ms, _last(rows, "latency_ms", ("deploy",)), "ms")
    if targets.max_accuracy_drop is not None:
        base = rows[0].get("accuracy") if rows else None
        last = _last(rows, "accuracy", ("verify", "quantize", "finetune", "prune"))
        drop = None if base is None or last is None else round(100 * (base - last), 4)
        add("accuracy drop (points)", targets.max_accuracy_drop, drop, "pt")
    if misses:
        for v in out:
            if not v["met"] and v["target"] in ("flash", "peak SRAM", "latency (C, batch 1)"):
                v["note"] += "; the pruning search hit its ratio limit (prune.max_ratio)"
    return out
