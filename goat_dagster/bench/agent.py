"""What an agent is to the runner: `Agent`, and the `AgentContext` of one task attempt.

An agent works on a task inside its sandbox before the hidden tests are run. The kinds (agents.py
names them): `builtin` (builtin_agent.py: a tool-calling loop on the host, through the gateway),
`command:<cmd>` (command_agent.py: an external agent run inside the sandbox) and `oracle` (writes
the task's reference solution). An agent reports what it used in `Usage` as it goes, so the
numbers survive an error, and records what it says and does in the attempt's `Transcript`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from goat_dagster.bench.calls import CallContext
from goat_dagster.bench.llm_client import LLMClient
from goat_dagster.bench.relay import GatewayRelay
from goat_dagster.bench.sandbox import Sandbox
from goat_dagster.bench.tasks import Task
from goat_dagster.bench.transcript import Transcript
from goat_dagster.bench.usage import AgentLimits, Usage
from goat_dagster.routing.gateway import Gateway


@dataclass
class AgentContext:
    task: Task
    sandbox: Sandbox
    call: CallContext
    limits: AgentLimits
    deadline: float  # time.monotonic() by which the agent must be done
    usage: Usage
    gateway: Gateway | None = None
    client: LLMClient | None = None
    relay: GatewayRelay | None = None
    transcript: Transcript = field(default_factory=Transcript.discard)  # what the attempt's page shows

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


class Agent(ABC):
    name: str = ""
    needs_gateway: bool = False  # the runner must resolve a model gateway
    needs_network: bool = False  # the sandbox must have a way out to the gateway
    uses_client: bool = False  # calls the gateway from the host (LLMClient)
    uses_prompts: bool = False  # speaks with goat's prompt set (prompts.py), part of its manifest

    @abstractmethod
    def run(self, ctx: AgentContext) -> None:
        """Work on `ctx.task` in `ctx.sandbox` until done or out of limits."""

    def request_params(self, limits: AgentLimits) -> dict[str, Any]:
        """The parameters of every chat completion this agent makes itself through goat's client
        (a run's manifest records them as its sampling settings; the proxy's defaults go under them)."""
        return {}

    def mounts(self) -> list[str]:
        """Host paths the agent needs to see (read-only) inside a local sandbox."""
        return []
