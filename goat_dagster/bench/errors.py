"""How a task attempt can go wrong, as the runner classifies it (DESIGN §6 `error_kind`).

A model that writes a wrong solution is not an error: that task is `failed`. These are the cases
where the attempt could not be scored: the infrastructure broke (`infra`: endpoint down, 5xx,
sandbox died — retried first), the agent ran out of wall-clock time (`timeout`), or the agent
itself broke (`agent`: a command agent that crashed, a request the model endpoint refuses).
"""

from __future__ import annotations


class AttemptError(Exception):
    """Ends a task attempt as `status=error` with `error_kind = kind`."""

    kind = "agent"


class InfraError(AttemptError):
    """The model gateway or the sandbox failed; worth retrying the attempt."""

    kind = "infra"


class AgentTimeout(AttemptError):
    """The agent used up its wall-clock limit."""

    kind = "timeout"


class AgentError(AttemptError):
    """The agent could not do its job for a reason of its own."""

    kind = "agent"
