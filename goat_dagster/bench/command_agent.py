"""The `command:<cmd>` agent: an external agent (like the seeds' goat-eval) run inside the sandbox.

It gets OPENAI_BASE_URL, a key scoped to this one attempt and model, the model name and the
instruction (GOAT_INSTRUCTION) — never a provider key, never the gateway's own key. In a local
sandbox its only way out is the attempt's gateway relay (relay.py); a cloud sandbox calls the
gateway itself with a scoped proxy key.
"""

from __future__ import annotations

import secrets

from goat_dagster.bench.agent import Agent, AgentContext
from goat_dagster.bench.errors import AgentError, AgentTimeout, InfraError
from goat_dagster.bench.mounts import command_files
from goat_dagster.routing.gateway import sandbox_key


class CommandAgent(Agent):
    needs_gateway = True
    needs_network = True

    def __init__(self, command: str) -> None:
        if not command.strip():
            raise ValueError("command agent needs a command: --agent 'command:<cmd>'")
        self.command = command
        self.name = f"command:{command}"

    def mounts(self) -> list[str]:
        """The executable and script files the command names by absolute path (mounts.py): not
        every absolute word — `/` in `ls -la /` is an argument, not something to mount."""
        return command_files(self.command)

    def env(self, ctx: AgentContext, base_url: str, key: str) -> dict[str, str]:
        assert ctx.gateway is not None
        return {
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_BASE": base_url,
            "OPENAI_API_KEY": key,
            "OPENAI_MODEL": ctx.gateway.model,
            "GOAT_MODEL": ctx.gateway.model,
            "GOAT_INSTRUCTION": ctx.task.instruction,
            "GOAT_WORKDIR": ctx.sandbox.workdir,
            "GOAT_RUN_ID": ctx.call.run_id,
            "GOAT_TASK_ID": ctx.task.id,
            "GOAT_EPOCH": str(ctx.call.epoch),
            "GOAT_TRACE_ID": ctx.call.trace_id,
            "GOAT_MAX_STEPS": str(ctx.limits.max_steps),
        }

    def run(self, ctx: AgentContext) -> None:
        assert ctx.gateway is not None
        if ctx.relay is not None:
            # the sandbox reaches only the relay; the relay holds the real key and checks ours
            token = "sk-relay-" + secrets.token_hex(16)
            ctx.relay.activate(token, ctx.call, ctx.usage, ctx.limits, ctx.transcript)
            base_url = ctx.sandbox.gateway_url(str(ctx.relay.socket_path))
        else:
            # a cloud sandbox calls the gateway itself, with a key scoped to this model and run
            if ctx.gateway.on_loopback:  # the runner refuses such a run up front; this is the backstop
                raise InfraError(
                    f"the gateway {ctx.gateway.base_url} is on this machine's loopback, which a "
                    f"{ctx.sandbox.kind} sandbox cannot reach; set GOAT_LITELLM_URL to a proxy it can reach"
                )
            base_url = ctx.gateway.base_url
            if ctx.gateway.agent_key is not None:  # GOAT_LLM_AGENT_KEY: the operator's own choice
                token = ctx.gateway.agent_key.get_secret_value()
            else:
                token = sandbox_key(
                    ctx.gateway.api_key.get_secret_value(),
                    ctx.gateway.model,
                    run_id=ctx.call.run_id,
                    work_s=ctx.limits.max_seconds,
                    ids={
                        "trace_id": ctx.call.trace_id,
                        "task_id": ctx.task.id,
                        "epoch": str(ctx.call.epoch),
                        "suite": ctx.call.suite,
                    },
                )
        try:
            res = ctx.sandbox.exec(
                self.command, timeout_s=max(1.0, ctx.time_left()), env=self.env(ctx, base_url, token)
            )
        finally:
            if ctx.relay is not None:
                ctx.relay.deactivate()
        ctx.usage.notes.append(f"agent exit {res.exit_code}; output: {res.tail(1500)}")
        ctx.usage.answer = res.stdout.strip()[-8000:] or None
        if res.killed == "timeout":
            message = f"`{self.command}` ran past the agent time limit ({ctx.limits.max_seconds:.0f}s)"
            if ctx.usage.last_gateway_error:  # waiting on a gateway that was down: not the agent's fault
                raise InfraError(f"{message}; its last model call failed: {ctx.usage.last_gateway_error}")
            raise AgentTimeout(message)
        if res.exit_code != 0:
            message = f"`{self.command}` exited with {res.exit_code}: {res.tail(300)}"
            if ctx.usage.gateway_errors:
                raise InfraError(f"{message} (after {ctx.usage.gateway_errors} gateway error(s))")
            raise AgentError(message)
        ctx.usage.stop_reason = "command finished"
