"""The agents, by the name a run gives them: `builtin`, `oracle` or `command:<cmd>` (`make_agent`).

- `builtin` (builtin_agent.py): a tool-calling loop on the host, through the gateway.
- `command:<cmd>` (command_agent.py): an external agent run inside the sandbox.
- `oracle` (here): writes the task's reference solution: proves tasks and checks right.
"""

from __future__ import annotations

from goat_dagster.bench.agent import Agent, AgentContext
from goat_dagster.bench.builtin_agent import BuiltinAgent
from goat_dagster.bench.command_agent import CommandAgent
from goat_dagster.bench.errors import AgentError


class OracleAgent(Agent):
    name = "oracle"

    def run(self, ctx: AgentContext) -> None:
        if ctx.task.reference is None:
            raise AgentError(f"task {ctx.task.id!r} has no reference solution for the oracle")
        ctx.sandbox.write_files(ctx.task.reference)
        ctx.usage.stop_reason = "reference written"


def make_agent(spec: str) -> Agent:
    """`builtin`, `oracle` or `command:<cmd>`."""
    spec = spec.strip()
    if spec == "oracle":
        return OracleAgent()
    if spec == "builtin":
        return BuiltinAgent()
    if spec.startswith("command:"):
        return CommandAgent(spec.removeprefix("command:"))
    raise ValueError(f"unknown agent {spec!r}; expected builtin, oracle or command:<cmd>")
