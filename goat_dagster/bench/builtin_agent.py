"""The `builtin` agent: a tool-calling loop on the host, its tools executed inside the sandbox.

Each step is one chat-completion call through the gateway (`LLMClient.chat`: metadata,
retries, cost, call log, the call in the attempt's transcript). Tool calls are answered with the
tool's output, or with an error the model can read when the call is malformed; the loop ends when
the model answers without a tool call, or at the step, token or time limit. Then the runner runs
the hidden tests, whatever state the work dir is in. The agent records its opening messages and
every tool result in the transcript too.
"""

from __future__ import annotations

import time
from typing import Any

from goat_dagster.bench.agent import Agent, AgentContext
from goat_dagster.bench.errors import AgentError
from goat_dagster.bench.tools import TOOL_SCHEMAS, ToolLimits, Tools

SYSTEM_PROMPT = """\
You are a coding agent working in a sandbox. Your working directory is {workdir}; the task's files \
are there. Use the tools to inspect files, write code and run it (Python 3 is available as \
`python`; there is no network). Make the smallest change that solves the task. When you are done, \
reply with a one-line summary and no tool call."""


class BuiltinAgent(Agent):
    name = "builtin"
    needs_gateway = True
    uses_client = True

    def run(self, ctx: AgentContext) -> None:
        assert ctx.client is not None, "the builtin agent needs a gateway client"
        lim = ctx.limits
        tools = Tools(
            ctx.sandbox,
            ToolLimits(command_timeout_s=lim.command_timeout_s, max_output_chars=lim.max_tool_output_chars),
        )
        listing = ", ".join(e.path for e in ctx.sandbox.walk(limit=200) if e.kind == "file") or "(empty)"
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT.format(workdir=ctx.sandbox.workdir)},
            {"role": "user", "content": f"{ctx.task.instruction.strip()}\n\nFiles: {listing}"},
        ]
        for m in messages:
            ctx.transcript.message(m)
        usage = ctx.usage
        for step in range(1, lim.max_steps + 1):
            if usage.tokens >= lim.max_tokens:
                usage.stop_reason = f"token limit ({lim.max_tokens})"
                return
            try:
                res = ctx.client.chat(
                    ctx.call,
                    step,
                    messages,
                    tools=TOOL_SCHEMAS,
                    max_tokens=lim.max_output_tokens,
                    deadline=ctx.deadline,
                    transcript=ctx.transcript,
                )
            except AgentError as exc:
                if step == 1:
                    raise  # the endpoint refuses this agent's very first request: not the model's answer
                usage.stop_reason = f"model endpoint refused step {step}: {exc}"
                return
            usage.add_call(res.prompt_tokens, res.completion_tokens, res.cost_usd)
            assistant = res.assistant
            messages.append(assistant)
            if assistant.get("content"):
                usage.answer = assistant["content"]
            if not assistant.get("tool_calls"):
                usage.stop_reason = (
                    "answered" if res.finish_reason != "length" else "answer cut at max tokens"
                )
                return
            for tc in assistant["tool_calls"]:
                usage.tool_calls += 1
                t0 = time.monotonic()
                name, arguments = tc["function"]["name"], tc["function"]["arguments"]
                text, ok = tools.call(name, arguments, time_left_s=ctx.time_left())
                messages.append({"role": "tool", "tool_call_id": tc["id"], "content": text})
                ctx.transcript.tool(
                    tc["id"], name, arguments, ok=ok, output=text, seconds=time.monotonic() - t0
                )
        usage.stop_reason = f"step limit ({lim.max_steps})"
