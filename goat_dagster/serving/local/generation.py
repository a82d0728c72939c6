"""One completion on a llama-cpp-python `Llama`, counted by the engine itself (worker processes,
tests and benchmarks; importing this loads llama.cpp).

`generate_piece` runs one prompt (token ids) to its end: the longest prefix still in the KV cache is
reused, the rest evaluated, then tokens are sampled until an end-of-generation token, a stop
condition, or the token budget — several per engine pass when a draft from the context is right
(`speculative.py`). What it cost comes from llama.cpp's own counters
(`llama_perf_context`): how many prompt tokens the engine evaluated (the rest were cached) and how
long that took, then how many tokens it generated and how long that took — the numbers llama.cpp's
server reports as `timings`, and the proof that a conversation's prefix is reused.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from goat_dagster.serving.local import speculative
from goat_dagster.serving.local.speculative import DRAFT_MAX, DraftStats

CONTEXT_ERROR = "Requested tokens ({n}) exceed context window of {n_ctx}"  # llama-cpp-python's words: its
# server turns them into a 400 `context_length_exceeded`, which LiteLLM maps to ContextWindowExceededError


@dataclass
class Piece:
    """One completion's outcome and what the engine did for it."""

    phase: str
    prompt_tokens: int  # tokens of its prompt
    evaluated: int  # of those, evaluated by the engine; the rest came from the KV cache
    prompt_ms: float  # prompt evaluation until the first token was sampled (wall clock)
    tokens: list[int] = field(default_factory=list)  # sampled, end-of-generation token excluded
    text: str = ""
    predicted_ms: float = 0.0
    finish_reason: str = "length"  # stop | length
    grammar: bool = False
    resampled: int = 0  # sampled tokens the grammar rejected (then sampled again from the allowed)
    draft: DraftStats = field(default_factory=DraftStats)  # prompt-lookup draft tokens, accepted

    @property
    def cached(self) -> int:
        return self.prompt_tokens - self.evaluated

    def timing(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "prompt_n": self.evaluated,
            "cache_n": self.cached,
            "prompt_ms": round(self.prompt_ms, 3),
            "predicted_n": len(self.tokens),
            "predicted_ms": round(self.predicted_ms, 3),
            "grammar": self.grammar,
            "resampled": self.resampled,
            "draft_n": self.draft.drafted,
            "draft_accepted": self.draft.accepted,
            "passes": self.draft.passes,
        }


def evaluated_tokens(llama: Any) -> int:
    """Tokens the engine has evaluated so far (prompt batches and single tokens alike)."""
    data = llama_cpp.llama_perf_context(llama.ctx)
    # llama.cpp reports a count of 0 as 1; its time is 0.0 exactly when nothing was evaluated
    n_p = data.n_p_eval if data.t_p_eval_ms > 0 else 0
    n_1 = data.n_eval if data.t_eval_ms > 0 else 0
    return n_p + n_1


class Budget:
    """Tokens one response may still generate, across all its completions (the request's max_tokens)."""

    def __init__(self, max_tokens: int | None) -> None:
        self.left = max_tokens if max_tokens and max_tokens > 0 else None

    def allows(self, n: int = 1) -> bool:
        return self.left is None or self.left >= n

    def take(self, n: int) -> None:
        if self.left is not None:
            self.left -= n


def is_eog(llama: Any, token: int) -> bool:
    return bool(llama_cpp.llama_vocab_is_eog(llama._model.vocab, token))


def generate_piece(
    llama: Any,
    prompt: Sequence[int],
    *,
    phase: str,
    sampling: dict[str, Any],
    budget: Budget,
    grammar: Any = None,
    done: Callable[[str], bool] | None = None,
    stop: Sequence[str] = (),
    ignore_eog: bool = False,
    draft_max: int = DRAFT_MAX,
) -> Generator[str, None, Piece]:
    """Evaluate `prompt` (reusing the cached prefix) and sample until the end-of-generation token,
    `done(text)`, a `stop` string (cut off, not returned) or the budget; yields the text as it
    becomes final and returns the `Piece`."""
    n_ctx = llama.n_ctx()
    if len(prompt) >= n_ctx:
        raise ValueError(CONTEXT_ERROR.format(n=len(prompt), n_ctx=n_ctx))
    room = n_ctx - len(prompt)
    piece = Piece(
        phase=phase, prompt_tokens=len(prompt), evaluated=0, prompt_ms=0.0, grammar=grammar is not None
    )
    if not budget.allows():
        return piece
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    held = ""  # decoded text not yet yielded: it may be the start of a stop string
    hold = max((len(s) for s in stop), default=1) - 1
    cut_by_stop = False
    before = evaluated_tokens(llama)
    t0 = time.perf_counter()
    t_first = None
    tokens = speculative.tokens(
        llama, prompt, sampling=sampling, grammar=grammar, draft_max=draft_max, stats=piece.draft
    )
    try:
        for token in tokens:
            if t_first is None:
                t_first = time.perf_counter()
                # the engine counts the draft that shared the prompt's pass as evaluated too
                piece.evaluated = evaluated_tokens(llama) - before - piece.draft.with_prompt
                piece.prompt_ms = (t_first - t0) * 1000
            if is_eog(llama, token) and not ignore_eog:
                piece.finish_reason = "stop"
                break
            budget.take(1)
            piece.tokens.append(token)
            held += decoder.decode(llama.detokenize([token]))
            text = piece.text + held
            cuts = [text.find(s) for s in stop if s in text]
            if cuts:  # a stop string starts inside `held` (everything before it was checked already)
                held = text[len(piece.text) : min(cuts)]
                piece.finish_reason, cut_by_stop = "stop", True
                break
            if done is not None and done(text):
                piece.finish_reason = "stop"
                break
            split = len(held) - hold
            if split > 0:
                piece.text += held[:split]
                yield held[:split]
                held = held[split:]
            if not budget.allows() or len(piece.tokens) >= room:
                break  # before the engine samples a token nobody would use
        if not cut_by_stop:
            held += decoder.decode(b"", final=True)
        if held:
            piece.text += held
            yield held
    finally:
        tokens.close()
        if t_first is not None:
            piece.predicted_ms = (time.perf_counter() - t_first) * 1000
        piece.resampled = int(getattr(getattr(llama, "_sampler", None), "resampled", 0))
    return piece


def run_piece(llama: Any, prompt: Sequence[int], **kwargs: Any) -> Piece:
    """`generate_piece` to its end, without streaming."""
    gen = generate_piece(llama, prompt, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
