"""The `builtin` agent: a tool-calling loop on the host, its tools executed inside the sandbox.

What the model is told — the system prompt, the first user message, the tools — is a prompt set
(prompts.py: `prompts/builtin/` unless the run names another).
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
from goat_dagster.bench.llm_client import TOOL_CHOICE
from goat_dagster.bench.prompts import PromptSet
from goat_dagster.bench.tools import ToolLimits, Tools
from goat_dagster.bench.usage import AgentLimits


class BuiltinAgent(Agent):
    name = "builtin"
    needs_gateway = True
    uses_client = True
    uses_prompts = True

    def __init__(self, prompts: PromptSet | None = None) -> None:
        self.prompts = prompts  # None only to ask what the agent needs; `run` needs them

    def request_params(self, limits: AgentLimits) -> dict[str, Any]:
        return {"tool_choice": TOOL_CHOICE, "max_tokens": limits.max_output_tokens}

    def run(self, ctx: AgentContext) -> None:
        assert ctx.client is not None, "the builtin agent needs a gateway client"
        assert self.prompts is not None, "the builtin agent needs a prompt set"
        prompts, lim, workdir = self.prompts, ctx.limits, ctx.sandbox.workdir
        tools = Tools(
            ctx.sandbox,
            ToolLimits(command_timeout_s=lim.command_timeout_s, max_output_chars=lim.max_tool_output_chars),
            prompts.offered,
        )
        schemas = prompts.tool_schemas
        listing = ", ".join(e.path for e in ctx.sandbox.walk(limit=200) if e.kind == "file") or "(empty)"
        task = prompts.task_prompt(instruction=ctx.task.instruction.strip(), files=listing, workdir=workdir)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompts.system_prompt(workdir=workdir)},
            {"role": "user", "content": task},
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
                    tools=schemas,
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
