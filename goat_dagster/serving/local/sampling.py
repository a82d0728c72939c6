"""Grammar-constrained sampling the way llama.cpp's own `common_sampler` does it (worker processes
only: importing this loads llama.cpp).

llama-cpp-python (0.3.x) puts the grammar sampler into the sampler chain, so every generated token
checks all ~49k vocabulary entries against the grammar: tool-call arguments came out at a third of
the engine's rate. llama.cpp's server samples first without the grammar, checks only the sampled
token against it, and applies the grammar to the whole vocabulary (then samples again) only when
that token is rejected. For greedy sampling the result is the same token; otherwise the same
rejection scheme as llama-server. `install()` makes every `Llama` of the process sample this way.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import llama as llama_module

_original_init_sampler = llama_module.Llama._init_sampler


class GrammarLastSampler:
    """A sampler chain without the grammar, plus the grammar checked on the sampled token first.

    Quacks like `llama_cpp._internals.LlamaSampler` where `Llama.sample` uses it (`sample`)."""

    def __init__(self, chain: Any, vocab: Any, grammar: Any, n_vocab: int) -> None:
        self.chain = chain  # _internals.LlamaSampler, grammar left out
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self.grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        self.n_vocab = n_vocab
        self.data = (llama_cpp.llama_token_data * n_vocab)()
        self.view = np.ctypeslib.as_array(self.data)  # fields id, logit, p
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.candidates = llama_cpp.llama_token_data_array(
            data=self.data, size=n_vocab, selected=-1, sorted=False
        )
        self.one = (llama_cpp.llama_token_data * 1)()
        self.one_array = llama_cpp.llama_token_data_array(data=self.one, size=1, selected=-1, sorted=False)
        self.accepted = 0  # sampled tokens the grammar allowed at once
        self.resampled = 0  # rejected ones: the grammar applied to the whole vocabulary

    def _fill(self, ctx: Any, idx: int) -> None:
        logits = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        self.view["id"] = self.ids
        self.view["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self.view["p"] = 0.0
        c = self.candidates
        c.data, c.size, c.selected, c.sorted = self.data, self.n_vocab, -1, False

    def _pick(self) -> int:
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(self.candidates))
        return int(self.data[self.candidates.selected].id)

    def allows(self, token: int) -> bool:
        return self._allows(self.grammar, token)

    def _allows(self, grammar: Any, token: int) -> bool:
        self.one[0].id, self.one[0].logit, self.one[0].p = token, 1.0, 0.0
        self.one_array.size, self.one_array.selected, self.one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self.one_array))
        return math.isfinite(self.one[0].logit)

    def allowed_prefix(self, tokens: list[int]) -> int:
        """How many of `tokens`, in order, the grammar allows from its current state (checked on a
        copy: the grammar itself does not move). A draft token past that can never be kept: the
        token sampled there is always one the grammar allows."""
        if not tokens:
            return 0
        copy = llama_cpp.llama_sampler_clone(self.grammar)
        try:
            for n, token in enumerate(tokens):
                if not self._allows(copy, token):
                    return n
                llama_cpp.llama_sampler_accept(copy, token)
            return len(tokens)
        finally:
            llama_cpp.llama_sampler_free(copy)

    def sample(self, ctx: Any, idx: int = -1) -> int:
        self._fill(ctx, idx)
        token = self._pick()
        if self.allows(token):
            self.accepted += 1
        else:
            self.resampled += 1
            self._fill(ctx, idx)
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self.candidates))
            token = self._pick()
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def close(self) -> None:
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None
        self.chain.close()

    def __del__(self) -> None:
        self.close()


def _init_sampler(self: Any, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
    chain = _original_init_sampler(self, *args, grammar=None, **kwargs)
    if grammar is None:
        return chain
    return GrammarLastSampler(chain, self._model.vocab, grammar, self._n_vocab)


def install() -> None:
    """Every `Llama` in this process samples grammar-last (idempotent)."""
    llama_module.Llama._init_sampler = _init_sampler
