"""How records become what a page shows: numbers formatted, diffs, long outputs split, transcripts
laid out in order. Plain data in, plain data out: the templates escape every string they print."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

HEAD_LINES = 40  # of a long output, shown before "N more lines"
HEAD_CHARS = 6000
NONE = "\u2013"  # an en dash where there is no value


# ---- numbers -----------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return NONE if x is None else f"{100 * x:.1f}%"


def interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"{100 * low:.0f}\u2013{100 * high:.0f}%"


def usd(x: float | None) -> str:
    if x is None:
        return NONE
    if x == 0:
        return "$0"
    return f"${x:.4f}" if x >= 0.01 else f"${x:.2g}"


def secs(x: float | None) -> str:
    if x is None:
        return NONE
    if x < 60:
        return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"
    m, s = divmod(round(x), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def when(x: Any) -> str:
    if x is None:
        return NONE
    if isinstance(x, str):
        try:
            x = datetime.fromisoformat(x)
        except ValueError:
            return x
    return x.strftime("%Y-%m-%d %H:%M:%S")


def num(x: Any) -> str:
    return NONE if x is None else f"{x:,}"


def errors_text(by_kind: dict[str, int] | None) -> str:
    parts = [f"{k} {n}" for k, n in (by_kind or {}).items() if n]
    return ", ".join(parts)


FILTERS = {"pct": pct, "usd": usd, "secs": secs, "when": when, "num": num, "errors_text": errors_text}


# ---- text ----------------------------------------------------------------------------------------


@dataclass
class Output:
    """A text split for display: `head` always shown, `rest` behind "N more lines"."""

    head: str
    rest: str = ""
    lines: int = 0

    @property
    def more_lines(self) -> int:
        return self.rest.count("\n") + 1 if self.rest else 0


def split_output(text: str | None, head_lines: int = HEAD_LINES) -> Output:
    text = text or ""
    lines = text.split("\n")
    if len(lines) <= head_lines and len(text) <= HEAD_CHARS:
        return Output(text, "", len(lines))
    head = "\n".join(lines[:head_lines])
    if len(head) > HEAD_CHARS:
        head = head[:HEAD_CHARS]
    return Output(head, text[len(head) :].removeprefix("\n"), len(lines))


def arguments(raw: Any) -> list[tuple[str, Output]] | Output:
    """A tool call's arguments: (name, value) pairs when they are a JSON object (multi-line string
    values as they are, not as JSON escapes), else the raw text."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return split_output(raw)
    if not isinstance(value, dict):
        return split_output(raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False))
    return [
        (str(k), split_output(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, indent=2)))
        for k, v in value.items()
    ]


def content_text(content: Any) -> str:
    """A message's content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text":
                parts.append(str(p.get("text", "")))
            else:
                parts.append(json.dumps(p, ensure_ascii=False))
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False)


@dataclass
class DiffLine:
    kind: str  # add | del | hunk | ctx
    text: str


def diff(before: str | None, after: str | None, path: str) -> list[DiffLine]:
    a = (before or "").splitlines()
    b = (after or "").splitlines()
    out = []
    for line in difflib.unified_diff(
        a, b, f"a/{path}" if before is not None else "/dev/null",
        f"b/{path}" if after is not None else "/dev/null", lineterm="", n=3,
    ):  # fmt: skip
        if line.startswith(("+++", "---")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        out.append(DiffLine(kind, line))
    return out


# ---- transcripts ---------------------------------------------------------------------------------


@dataclass
class Item:
    """One thing that happened in an attempt, in order."""

    kind: str  # message | call | tool | files | check | end | note
    data: dict[str, Any]
    parts: dict[str, Any] = field(default_factory=dict)


def _tool_calls(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for tc in (message or {}).get("tool_calls") or []:
        fn = tc.get("function") or {}
        out.append(
            {"id": tc.get("id"), "name": fn.get("name") or "?", "args": arguments(fn.get("arguments"))}
        )
    return out


def _message_item(m: dict[str, Any]) -> Item:
    role = str(m.get("role") or "?")
    parts: dict[str, Any] = {"text": split_output(content_text(m.get("content")))}
    if role == "assistant":
        parts["tool_calls"] = _tool_calls(m)
    return Item("message", {"role": role, "tool_call_id": m.get("tool_call_id")}, parts)


def transcript_items(
    events: list[dict[str, Any]], traces: dict[Any, dict[str, Any]], trace_id: str = ""
) -> list[Item]:
    """An attempt's events as the page shows them; `traces` by call id, or by (trace id, step)."""
    items: list[Item] = []
    for e in events:
        kind = e.get("type")
        if kind == "message":
            items.append(_message_item(e.get("message") or {}))
        elif kind == "call":
            for m in e.get("request") or []:  # what a command agent sent that was not shown yet
                if isinstance(m, dict) and m.get("role") != "assistant":
                    items.append(_message_item(m))
            msg = e.get("message") or {}
            items.append(
                Item(
                    "call",
                    e,
                    {
                        "text": split_output(content_text(msg.get("content"))),
                        "tool_calls": _tool_calls(msg),
                        "trace": traces.get(e.get("call_id") or (trace_id, e.get("step"))),
                    },
                )
            )
        elif kind == "tool":
            items.append(
                Item(
                    "tool",
                    e,
                    {"args": arguments(e.get("arguments")), "output": split_output(e.get("output"))},
                )
            )
        elif kind == "files":
            files = []
            for c in e.get("changes") or []:
                text_change = c.get("after") is not None or (
                    c.get("change") == "deleted" and c.get("before") is not None
                )
                files.append(
                    {**c, "diff": diff(c.get("before"), c.get("after"), c["path"]) if text_change else []}
                )
            items.append(Item("files", e, {"files": files}))
        elif kind == "check":
            out = "\n".join(s for s in (e.get("stdout"), e.get("stderr")) if s)
            items.append(Item("check", e, {"output": split_output(out, head_lines=80)}))
        elif kind == "end":
            items.append(Item("end", e))
    return items


def calls_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [e for e in events if e.get("type") == "call"]
    return {
        "calls": len(calls),
        "failed": sum(not e.get("ok", True) for e in calls),
        "prompt_tokens": sum(e.get("prompt_tokens") or 0 for e in calls),
        "completion_tokens": sum(e.get("completion_tokens") or 0 for e in calls),
        "cost_usd": sum(e.get("cost_usd") or 0.0 for e in calls),
        "latency_s": sum(e.get("latency_s") or 0.0 for e in calls),
        "tools": sum(e.get("type") == "tool" for e in events),
    }


def page_of_calls(items: list[Item], page: int, per_page: int) -> tuple[list[Item], int, int]:
    """The items of one page of a long transcript: `per_page` model calls with what follows each
    (tool results), what came before the first call on the first page, the files, check and outcome
    on the last. Returns (items, page, pages)."""
    starts = [i for i, it in enumerate(items) if it.kind == "call"]
    pages = max(1, -(-len(starts) // per_page))
    page = min(max(1, page), pages)
    if pages == 1:
        return items, 1, 1
    lo = 0 if page == 1 else starts[(page - 1) * per_page]
    hi = len(items) if page == pages else starts[page * per_page]
    return items[lo:hi], page, pages
