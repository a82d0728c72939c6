"""Token generation with prompt-lookup drafts, verified in one batch (worker processes, tests and
benchmarks; importing this loads llama.cpp).

An agent's model calls copy a lot of text that is already in the context: paths and names from the
task and the tool results, and (a small model especially) its own earlier calls, repeated. So the
tokens that followed the latest occurrence of the last few generated tokens are a good guess of what
comes next (prompt-lookup decoding). The guess — the draft — is evaluated together with the last
sampled token in one batch, which costs about one token's time on a CPU; the sampler then samples
position by position from the engine's logits exactly as it would without a draft (same sampler
chain, same grammar check, one random draw per token), and the draft is kept only as long as the
sampled tokens equal it. At the first difference the rest of the draft is dropped from the KV cache,
and the sampled token is the next one to evaluate. So the tokens come from the same distribution as
one-by-one decoding — for greedy decoding they are the same tokens — and a grammar's guarantees hold;
only the number of engine passes changes.

`tokens()` keeps llama-cpp-python's `Llama` bookkeeping (`input_ids`, `n_tokens`, the KV cache) the
way `Llama.generate` does, so prefix reuse works across completions whichever of the two ran.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# tokens proposed per engine pass at most (llama-cpp-python's LlamaPromptLookupDecoding: 10). 32: an
# agent's repeated tool call (~25 tokens) is drafted whole; benchmarks/demo_calls.py, one run each at
# load 1.1-1.7: 139 s for 29 calls with 32, 178 s for 32 calls with 10 (the arguments 2.0 s per call
# against 2.7 s); the draft shrinks after a wrong guess anyway
DRAFT_MAX = 32
NGRAM_MAX = 3  # the longest suffix looked up; shorter ones when it is not found


def lookup_draft(history: np.ndarray, n_max: int, ngram_max: int = NGRAM_MAX) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the history's last n tokens (the
    longest n <= ngram_max that occurs), at most n_max of them; [] when nothing matches."""
    size = len(history)
    if n_max <= 0 or size < 2:
        return []
    for n in range(min(ngram_max, size - 1), 0, -1):
        tail = history[-n:]
        windows = np.lib.stride_tricks.sliding_window_view(history[:-1], n)  # occurrences before the tail
        hits = np.flatnonzero((windows == tail).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            return history[start : start + n_max].tolist()
    return []


@dataclass
class DraftStats:
    drafted: int = 0  # draft tokens evaluated
    accepted: int = 0  # of those, equal to the sampled token (their engine pass was saved)
    with_prompt: int = 0  # draft tokens evaluated in the prompt's pass (not prompt tokens)
    passes: int = 0  # engine passes that sampled (the prompt's last one included)


def _reuse_prefix(llama: Any, prompt: list[int]) -> int:
    """Keep the longest prefix of `prompt` already in the KV cache (at least one token is always
    evaluated again, so the last position has fresh logits); how many tokens were kept."""
    cached = llama.input_ids[: llama.n_tokens]
    n = min(len(cached), len(prompt) - 1)
    if n > 0:
        diff = np.flatnonzero(cached[:n] != np.asarray(prompt[:n], dtype=cached.dtype))
        n = int(diff[0]) if diff.size else n
    if n > 0 and not llama._ctx.kv_cache_seq_rm(-1, n, -1):
        n = 0  # partial removal not supported: evaluate everything
    llama.n_tokens = n
    return n


def _decode(llama: Any, batch: list[int], first_logits: int) -> None:
    """Evaluate `batch` after the cached tokens, with logits from position `first_logits` on."""
    n_past = llama.n_tokens
    llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llama._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
    for i in range(first_logits, len(batch)):
        llama._batch.batch.logits[i] = True
    llama._ctx.decode(llama._batch)
    llama.input_ids[n_past : n_past + len(batch)] = batch
    llama.n_tokens = n_past + len(batch)


def tokens(
    llama: Any,
    prompt: Sequence[int],
    *,
    sampling: dict[str, Any],
    grammar: Any = None,
    draft_max: int = DRAFT_MAX,
    stats: DraftStats | None = None,
) -> Generator[int, None, None]:
    """Sample tokens after `prompt` (its cached prefix reused) for as long as the caller takes them,
    drafting up to `draft_max` tokens per engine pass (0: one token per pass). The prompt's tokens
    not in the cache and the first draft (looked up in the prompt) share one pass."""
    stats = stats if stats is not None else DraftStats()
    if sampling.get("logits_processor") is not None:
        draft_max = 0  # a logits processor reads `input_ids`, which holds the draft during a pass
    sampler = llama._init_sampler(**sampling, grammar=grammar)
    llama._sampler = sampler  # where llama-cpp-python keeps it (and goat's counters read it)
    # under a grammar, draft only what the grammar allows (sampling.GrammarLastSampler): the rest
    # could never be kept — a tool call's arguments end where its JSON object closes
    bounded = getattr(sampler, "allowed_prefix", None) if grammar is not None else None
    prompt = list(prompt)
    history = np.zeros(len(prompt) + llama.n_ctx(), dtype=np.intc)
    history[: len(prompt)] = prompt
    size = len(prompt)
    # how many to draft next: the full length while drafts are right, as many as were right after a
    # wrong one, doubling back; after a draft with nothing right, none for 1, 2, 4 ... 16 passes (a
    # pass of 2 tokens costs ~1.5x one of 1 here, one of 11 ~3x: free text rarely repeats itself)
    n_draft, pause, wait = draft_max, 0, 0
    try:
        _reuse_prefix(llama, prompt)
        pending = prompt[llama.n_tokens :]  # to evaluate: never empty
        first = True
        while True:
            room = llama.n_ctx() - llama.n_tokens - len(pending)  # for a draft after `pending`
            if room < 0:
                return
            draft = lookup_draft(history[:size], min(n_draft, room)) if wait == 0 else []
            if draft and bounded is not None:  # not past where the grammar ends or forbids it
                draft = draft[: bounded(draft)]
            wait = max(0, wait - 1)
            if len(pending) > 1 and len(pending) + len(draft) > llama.n_batch:
                llama.eval(pending[:-1])  # a long prompt: in batches of n_batch, logits for none
                pending = pending[-1:]
            n_past, base = llama.n_tokens, len(pending) - 1  # logits of `base` predict draft[0]
            _decode(llama, [*pending, *draft], first_logits=base)
            stats.drafted += len(draft)
            stats.passes += 1
            if first:
                stats.with_prompt, first = len(draft), False
            for i in range(len(draft) + 1):
                token = sampler.sample(llama._ctx, base + i)
                kept = i < len(draft) and token == draft[i]  # evaluated already, in this pass
                if kept:
                    stats.accepted += 1
                elif i < len(draft):  # the rest of the draft is not what the model says
                    llama.n_tokens = n_past + base + i + 1
                    llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
                yield token
                history[size] = token
                size += 1
                if not kept:
                    break
            if draft:  # `i`: the draft tokens the model agreed with
                if i == 0:
                    n_draft, pause = 1, min(16, max(1, 2 * pause))
                    wait = pause
                else:
                    n_draft, pause = (min(draft_max, 2 * n_draft) if i == len(draft) else i), 0
            pending = [token]
    finally:
        llama._requires_eval = True  # the context's last logits need not be those of input_ids' end
