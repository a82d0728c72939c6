"""A doctor check's result, the phases they belong to, and how they are shown (text, JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PHASES = ("config", "engine", "secrets", "services", "endpoints", "proxy", "traces")


@dataclass
class Check:
    phase: str
    name: str
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""


def render(checks: list[Check]) -> str:
    marks = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
    lines = []
    for phase in PHASES:
        rows = [c for c in checks if c.phase == phase]
        if not rows:
            continue
        if any(c.status == "fail" for c in rows):
            head = "FAILED"
        elif all(c.status == "skip" for c in rows):
            head = "skipped"
        else:
            head = "ok"
        lines.append(f"[{phase}] {head}")
        for c in rows:
            lines.append(f"  {marks[c.status]}  {c.name}: {c.detail}")
            if c.fix and c.status in ("fail", "warn"):
                lines.append(f"        fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append("")
    lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
    return "\n".join(lines)


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not any(c.status == "fail" for c in checks), "checks": [asdict(c) for c in checks]}
