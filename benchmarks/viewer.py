"""How fast `goat view` answers on big runs: two runs of 10,000 task attempts and a 200-call transcript.

    .venv/bin/python benchmarks/viewer.py [--attempts 10000] [--calls 200] [--repeat 5] [--json]

1. Builds a GOAT_HOME in a temp dir with the harness's own writers (what `goat run` writes):
   two runs of N attempts each (results lake Parquet + journal with check output per row), one
   attempt of the first run with a transcript of C model calls (each with a tool call and its
   result, 0.5-8 KB of output), its traces exported to the lake, and a few small runs.
2. Starts a real `goat view` on a free port and times each page over HTTP: the first request
   (cold: that page's files read for the first time; the transcript is the server's very first
   request) and the median of `--repeat` more (warm: the files did not change).
3. Opens the run list, the big run and the transcript in headless Chromium (Debian's) and prints
   the time to the `load` event as a user would see it.

Targets (issue 16): a 10,000-attempt run lists in < 1 s; a 200-call transcript opens in < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from goat_dagster.bench.journal import RunJournal, RunSpec
from goat_dagster.bench.lake import ResultRow, write_results
from goat_dagster.bench.tasks import Task
from goat_dagster.bench.transcript import Transcript
from goat_dagster.tracing.export import export_path, write_traces
from goat_dagster.tracing.schema import TraceRecord, new_id

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_home(attempts: int, calls: int) -> dict[str, str]:
    """Writes the lake through goat's writers; returns the ids to open."""
    rng = random.Random(16)
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ids: dict[str, str] = {}
    for name, model in (("big_a", "model-a"), ("big_b", "model-b")):
        run_id = f"bench-{name}-{attempts}"
        spec = RunSpec(
            run_id=run_id,
            suite="big",
            suite_version="v1",
            model=model,
            agent="builtin",
            sandbox="local",
            epochs=1,
        )
        journal = RunJournal(spec)
        rows = []
        for i in range(attempts):
            status = rng.choices(["passed", "failed", "error"], [0.55, 0.4, 0.05])[0]
            start = t0 + timedelta(seconds=i * 0.5)
            wall = rng.uniform(1, 60)
            row = ResultRow(
                run_id=run_id,
                suite="big",
                suite_version="v1",
                model=model,
                agent="builtin",
                sandbox="local",
                task_id=f"task-{i:05d}",
                epoch=1,
                status=status,
                error_kind=rng.choice(["infra", "timeout", "agent"]) if status == "error" else None,
                started_at=start,
                finished_at=start + timedelta(seconds=wall),
                wall_s=wall,
                steps=rng.randint(1, 30),
                tool_calls=rng.randint(0, 40),
                prompt_tokens=rng.randint(500, 90000),
                completion_tokens=rng.randint(50, 5000),
                cost_usd=rng.uniform(0, 0.05),
                trace_id=new_id(),
            )
            detail = {
                "attempts": [
                    {
                        "trace_id": row.trace_id,
                        "stop": "answered",
                        "check_output": "..F\nFAILED test_solution.py::test_edge - AssertionError"
                        if status == "failed"
                        else "ok",
                    }
                ]
            }
            journal.append(row, detail)
            rows.append(row)
        journal.close()
        write_results(run_id, rows)
        ids[name] = run_id

    # one attempt of the first run with a long transcript, and its traces in the lake
    run_id, task_id = ids["big_a"], "task-00042"
    trace_id = new_id()
    task = Task(
        id=task_id,
        instruction="Fix the failing tests in the repository. " * 20,
        files={"app.py": "def f():\n    return 1\n" * 50},
        check="python -m pytest -q",
    )
    tr = Transcript.for_attempt(run_id, task_id, 1, trace_id)
    tr.start(task=task, epoch=1, attempt=1, trace_id=trace_id, agent="builtin")
    tr.message({"role": "system", "content": "You are a coding agent working in a sandbox. " * 10})
    tr.message({"role": "user", "content": task.instruction})
    traces = []
    for step in range(1, calls + 1):
        call_id = new_id()
        tool_id = f"call_{step}"
        command = f"python -m pytest -q tests/test_{step % 17}.py -k case_{step}"
        tr.call(
            step,
            call_id=call_id,
            message={
                "role": "assistant",
                "content": f"Step {step}: looking at the failure. " * rng.randint(1, 8),
                "tool_calls": [
                    {
                        "id": tool_id,
                        "type": "function",
                        "function": {"name": "Bash", "arguments": json.dumps({"command": command})},
                    }
                ],
            },
            prompt_tokens=1000 + 300 * step,
            completion_tokens=rng.randint(20, 400),
            cost_usd=0.0004 * step,
            cost_source="gateway",
            latency_s=rng.uniform(0.3, 4),
            finish_reason="tool_calls",
        )
        out = "\n".join(
            f"tests/test_{step % 17}.py::case_{j} {'PASSED' if j % 3 else 'FAILED'}"
            for j in range(rng.randint(10, 160))
        )
        tr.tool(tool_id, "Bash", json.dumps({"command": command}), ok=True, output=out[:8000], seconds=0.8)
        start = t0 + timedelta(seconds=step * 3)
        traces.append(
            TraceRecord(
                source="sink",
                call_id=call_id,
                trace_id=trace_id,
                run_id=run_id,
                task_id=task_id,
                epoch=1,
                step=step,
                model="model-a",
                start_time=start,
                end_time=start + timedelta(seconds=1.5),
                latency_s=1.5,
                prompt_tokens=1000,
                completion_tokens=100,
                cost_usd=0.0004,
            )
        )
    tr.event(
        "files",
        changes=[
            {
                "path": "app.py",
                "change": "modified",
                "before": task.files["app.py"],
                "after": task.files["app.py"].replace("return 1", "return 2"),
                "size": 1200,
            }
        ],
    )
    tr.event(
        "check",
        command=task.check,
        passed=False,
        exit_code=1,
        killed=None,
        seconds=2.1,
        stdout="F" * 80 + "\n1 failed, 99 passed",
        stderr="",
        truncated=False,
    )
    tr.end(status="failed", error_kind=None, note={"stop": "answered"})
    write_traces(traces, export_path(run_id))
    ids["task"] = task_id
    return ids


def serve(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    t = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "goat"), "view", "--port", str(port)],
        env={**os.environ, "GOAT_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() - t > 60:
            raise RuntimeError("goat view did not start")
        time.sleep(0.05)
    print(f"goat view answered {time.monotonic() - t:.2f} s after it was started")
    return proc, url


def time_page(client: httpx.Client, url: str, repeat: int) -> dict[str, float]:
    t = time.perf_counter()
    r = client.get(url)
    cold = time.perf_counter() - t
    r.raise_for_status()
    warm = []
    for _ in range(repeat):
        t = time.perf_counter()
        client.get(url).raise_for_status()
        warm.append(time.perf_counter() - t)
    return {"cold_s": cold, "warm_median_s": statistics.median(warm), "kb": len(r.content) / 1024}


def browser_times(base: str, paths: dict[str, str]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        page = b.new_page()
        for name, path in paths.items():
            t = time.perf_counter()
            page.goto(base + path, wait_until="load")
            out[name] = time.perf_counter() - t
        b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="goat-bench-view-"))
    os.environ["GOAT_HOME"] = str(home)
    try:
        t = time.monotonic()
        ids = build_home(args.attempts, args.calls)
        print(
            f"wrote 2 runs of {args.attempts} attempts and a {args.calls}-call transcript in "
            f"{time.monotonic() - t:.1f} s"
        )
        proc, base = serve(home)
        try:
            a, b, task = ids["big_a"], ids["big_b"], ids["task"]
            pages = {  # in this order: the first is opened on a server that has read nothing yet
                f"transcript of {args.calls} calls": f"/runs/{a}/tasks/{task}/1",
                "runs (/)": "/",
                f"run of {args.attempts} attempts": f"/runs/{b}",
                "  sorted by wall time, page 50": f"/runs/{b}?sort=wall_s&desc=1&page=50",
                "  filtered: failed, 'edge'": f"/runs/{b}?status=failed&q=edge",
                "another task of that run": f"/runs/{b}/tasks/task-09999/1",
                "compare two big runs": f"/compare?a={a}&b={b}",
                "leaderboard": "/leaderboard",
            }
            results = {}
            with httpx.Client(base_url=base, timeout=60) as client:
                for name, path in pages.items():
                    results[name] = time_page(client, path, args.repeat)
            shown = {"runs": "/", "big run": f"/runs/{a}", "transcript": f"/runs/{a}/tasks/{task}/1"}
            browser = browser_times(base, shown)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(10)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps({"pages": results, "browser_load_s": browser}, indent=2))
        return
    print(f"\n{'page':38} {'cold':>8} {'warm p50':>9} {'size':>9}")
    for name, r in results.items():
        print(f"{name:38} {r['cold_s'] * 1000:6.0f}ms {r['warm_median_s'] * 1000:7.0f}ms {r['kb']:7.0f}KB")
    print("\nheadless Chromium, request to `load` event (cache warm):")
    for name, s in browser.items():
        print(f"  {name:20} {s * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
