"""What a task attempt may use (`AgentLimits`) and what it used (`Usage`).

Agents count into `Usage` as they go (the builtin loop per model call, the gateway relay per call a
`command:` agent makes), so the numbers survive an error; the runner sums an attempt's usage into
its results row.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    answer: str | None = None  # the agent's last words: the model's final message, a command's output

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
