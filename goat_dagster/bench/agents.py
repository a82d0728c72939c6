"""Agents: what works on a task inside its sandbox before the hidden tests are run.

- `builtin` (builtin_agent.py): a tool-calling loop on the host, through the gateway.
- `command:<cmd>`: an external agent (like the seeds' goat-eval) run inside the sandbox. It gets
  OPENAI_BASE_URL, a key scoped to this one attempt and model, the model name and the instruction
  (GOAT_INSTRUCTION) — never a provider key, never the gateway's own key.
- `oracle`: writes the task's reference solution: proves tasks and checks right.

An agent reports what it used in `Usage` as it goes, so the numbers survive an error.
"""

from __future__ import annotations

import os
import secrets
import shlex
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from goat_dagster.bench.errors import AgentError, AgentTimeout, InfraError
from goat_dagster.bench.sandbox import Sandbox
from goat_dagster.bench.suite import Task
from goat_dagster.bench.transcript import Transcript

if TYPE_CHECKING:
    from goat_dagster.bench.gateway import CallContext, Gateway, GatewayClient
    from goat_dagster.bench.relay import GatewayRelay


@dataclass(frozen=True)
class AgentLimits:
    """Per task attempt."""

    max_steps: int = 30  # model calls
    max_seconds: float = 900.0  # wall clock of the agent phase
    max_tokens: int = 200_000  # prompt + completion tokens over all calls
    max_output_tokens: int = 1024  # per call
    command_timeout_s: float = 120.0  # one Bash tool command
    max_tool_output_chars: int = 8000


@dataclass
class Usage:
    steps: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    gateway_errors: int = 0
    last_gateway_error: str | None = None  # the gateway was failing at the last call (None: it answered)
    stop_reason: str = ""
    notes: list[str] = field(default_factory=list)

    def add_call(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.steps += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd
        self.last_gateway_error = None

    def gateway_failed(self, error: str) -> None:
        """A model call failed for the gateway's reasons (unreachable, 5xx, 429)."""
        self.gateway_errors += 1
        self.last_gateway_error = error

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class AgentContext:
    task: Task
    sandbox: Sandbox
    call: CallContext
    limits: AgentLimits
    deadline: float  # time.monotonic() by which the agent must be done
    usage: Usage
    gateway: Gateway | None = None
    client: GatewayClient | None = None
    relay: GatewayRelay | None = None
    transcript: Transcript = field(default_factory=Transcript.discard)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


class Agent:
    name: str = ""
    needs_gateway: bool = False  # the runner must resolve a model gateway
    needs_network: bool = False  # the sandbox must have a way out to the gateway
    uses_client: bool = False  # calls the gateway from the host (GatewayClient)

    def run(self, ctx: AgentContext) -> None:
        raise NotImplementedError

    def mounts(self) -> list[str]:
        """Host paths the agent needs to see (read-only) inside a local sandbox."""
        return []


class OracleAgent(Agent):
    name = "oracle"

    def run(self, ctx: AgentContext) -> None:
        if ctx.task.reference is None:
            raise AgentError(f"task {ctx.task.id!r} has no reference solution for the oracle")
        ctx.sandbox.write_files(ctx.task.reference)
        ctx.usage.stop_reason = "reference written"


class CommandAgent(Agent):
    needs_gateway = True
    needs_network = True

    def __init__(self, command: str) -> None:
        if not command.strip():
            raise ValueError("command agent needs a command: --agent 'command:<cmd>'")
        self.command = command
        self.name = f"command:{command}"

    def mounts(self) -> list[str]:
        """Absolute host paths named in the command (the agent's binary or script), if they exist."""
        try:
            words = shlex.split(self.command)
        except ValueError:
            words = self.command.split()
        return [w for w in words if w.startswith("/") and os.path.exists(w)]

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
                from goat_dagster.serving.gateway import sandbox_key

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


def make_agent(spec: str) -> Agent:
    """`builtin`, `oracle` or `command:<cmd>`."""
    spec = spec.strip()
    if spec == "oracle":
        return OracleAgent()
    if spec == "builtin":
        from goat_dagster.bench.builtin_agent import BuiltinAgent

        return BuiltinAgent()
    if spec.startswith("command:"):
        return CommandAgent(spec.removeprefix("command:"))
    raise ValueError(f"unknown agent {spec!r}; expected builtin, oracle or command:<cmd>")
