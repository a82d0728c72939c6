"""A multi-step tool-calling conversation through the real `goat serve` (SmolLM2, the builtin
agent's tools): every call parses, each response says what the engine evaluated, and every later
step reuses the conversation's prefix from the KV cache — by the engine's own count of evaluated
prompt tokens (`usage.prompt_tokens_details.cached_tokens`, `timings.prompt_n`), not by timing."""

from __future__ import annotations

import json

import pytest

from goat_dagster.bench.prompts import load_prompt_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOOL_SCHEMAS = load_prompt_set().tool_schemas  # the builtin agent's tools (prompts/builtin/tools.yaml)
TOOL_NAMES = {t["function"]["name"] for t in TOOL_SCHEMAS}


def step(plane, messages: list[dict]) -> dict:
    r = plane.chat(
        "smol-a",
        max_tokens=96,
        temperature=0,
        tools=TOOL_SCHEMAS,
        tool_choice="auto",
        **{"messages": messages},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_multi_step_tool_calls_reuse_the_cached_prefix(plane):
    messages = [
        {"role": "system", "content": "You are a coding agent. Use the tools to do the task."},
        {"role": "user", "content": "Write fib.py that prints the first 10 Fibonacci numbers, then run it."},
    ]
    prompts: list[int] = []
    answers: list[int] = []  # completion tokens of each answer (the next prompt holds it whole)
    calls = 0
    for n in range(4):
        body = step(plane, messages)
        usage, timings = body["usage"], body["timings"]
        choice = body["choices"][0]
        message = choice["message"]
        # the engine's counts: cached + evaluated = the prompt, generated = completion tokens
        first = timings["phases"][0]
        assert first["cache_n"] == usage["prompt_tokens_details"]["cached_tokens"] == timings["cache_n"]
        assert first["cache_n"] + first["prompt_n"] == usage["prompt_tokens"]
        assert timings["predicted_n"] == usage["completion_tokens"] <= 96
        if n > 0:
            # everything up to the previous prompt (at least) came from the KV cache
            assert usage["prompt_tokens_details"]["cached_tokens"] >= prompts[-1], (n, usage, prompts)
            assert first["prompt_n"] < usage["prompt_tokens"] - prompts[-1] + 8, (n, first)
            # and the previous answer, sent back as it came, too: the tokens the model generated
            # spell it in the next prompt (token_history), not a re-tokenization of its text
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            assert cached >= prompts[-1] + answers[-1] - 1, (n, usage, prompts, answers)
        prompts.append(usage["prompt_tokens"])
        # a call cut at max_tokens is sent back as it came too (the demo's answers all are)
        answers.append(usage["completion_tokens"])
        # as the builtin agent sends it back (llama-cpp-python's request model wants a string content)
        messages.append({**message, "content": message.get("content") or ""})
        for call in message.get("tool_calls") or []:
            assert call["function"]["name"] in TOOL_NAMES
            if choice["finish_reason"] == "tool_calls":  # complete calls parse as JSON objects
                assert isinstance(json.loads(call["function"]["arguments"]), dict), call
            calls += 1
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": "done"})
        if not message.get("tool_calls"):
            messages.append({"role": "user", "content": "Now run it with the Bash tool."})
    assert calls >= 1, "SmolLM2 made no tool call in four steps"
    assert prompts == sorted(prompts) and prompts[-1] > prompts[0]


AGENT = [
    {"role": "system", "content": load_prompt_set().system_prompt(workdir="/workspace")},
    {"role": "user", "content": "Read solution.py, then test_solution.py.\n\nFiles: solution.py"},
]


def test_each_further_call_is_one_completion_and_streams_as_calls(plane):
    """After the first call, "another call?" and that call's arguments are one completion under one
    grammar (the drafts run on from the name into the arguments): the turn's phases are routing,
    arguments, then one `next call` per further call (and one more when the model ends its turn).
    Streamed, each call's name comes first, then its arguments, and complete calls parse."""
    body = step(plane, AGENT)
    calls = body["choices"][0]["message"].get("tool_calls") or []
    finish = body["choices"][0]["finish_reason"]
    phases = [p["phase"] for p in body["timings"]["phases"]]
    if calls:
        assert phases[:2] == ["routing", "arguments"], phases
        assert set(phases[2:]) <= {"next call"}, phases
        assert len(phases) - 2 in (len(calls) - 1, len(calls)), (phases, len(calls))
    r = plane.chat(
        "smol-a", max_tokens=96, temperature=0, tools=TOOL_SCHEMAS, stream=True, **{"messages": AGENT}
    )
    assert r.status_code == 200, r.text
    streamed: dict[int, dict] = {}
    for line in r.text.splitlines():
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[len("data: ") :])
        for choice in chunk["choices"]:
            for tc in choice["delta"].get("tool_calls") or []:
                call = streamed.setdefault(tc["index"], {"name": None, "arguments": ""})
                if "id" in tc:  # the first delta of a call: its name, before any argument
                    assert call["name"] is None and call["arguments"] == "", (tc, call)
                    call["name"] = tc["function"]["name"]
                call["arguments"] += tc["function"].get("arguments") or ""
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    assert streamed, "SmolLM2 made no tool call when asked to read two files"
    complete = list(streamed.values()) if finish == "tool_calls" else list(streamed.values())[:-1]
    for call in streamed.values():
        assert call["name"] in TOOL_NAMES, call
    for call in complete:
        assert isinstance(json.loads(call["arguments"]), dict), call
