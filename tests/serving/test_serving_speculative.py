"""Prompt-lookup drafts (`serving/local/speculative.py`): the draft is looked up where it should be,
and with the real SmolLM2 engine in this process drafting changes only the number of engine passes —
greedy decoding gives the same tokens with and without drafts, free or under a tool's JSON-schema
grammar, and the KV cache is left as `Llama` expects (the next prompt reuses the prefix).

"The same tokens" up to the engine's arithmetic: llama.cpp computes a position's logits a little
differently in a batch of several tokens than alone (measured here: up to 0.92 apart for SmolLM2
Q4_1, the same as between evaluating a prompt at once and with its prefix cached), so where the two
best tokens are that close, greedy decoding may pick the other one. The tests check exactly that:
the outputs agree up to the first difference, and there the model's own (one-token-per-pass) logits
of the two tokens are within that margin — a near tie, not a wrong token."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from goat_dagster.serving.local.speculative import lookup_draft


def test_lookup_draft_takes_the_latest_occurrence_of_the_longest_suffix():
    history = np.array([1, 2, 3, 9, 9, 5, 2, 3, 7, 8, 6, 2, 3], dtype=np.intc)
    # the suffix [2, 3] occurs at 1 and at 6: the latest one's continuation
    assert lookup_draft(history, 3) == [7, 8, 6]
    assert lookup_draft(history, 1) == [7]
    # a longer suffix wins over a shorter one: [6, 2, 3] is unique, [5, 2, 3] decides nothing here
    history = np.array([4, 2, 3, 1, 1, 6, 2, 3, 5, 5, 4, 2, 3], dtype=np.intc)
    assert lookup_draft(history, 2) == [1, 1]  # [4, 2, 3] at 0 beats the later [2, 3] at 6
    assert lookup_draft(np.array([1, 2, 3], dtype=np.intc), 4) == []  # nothing repeats
    assert lookup_draft(history, 0) == []


@pytest.fixture(scope="module")
def llama(smollm2: Path):
    from llama_cpp import Llama

    from goat_dagster.serving.local import llama_patches

    llama_patches.install()
    return Llama(str(smollm2), n_ctx=2048, n_threads=2, verbose=False)


NEAR_TIE = 1.0  # logits apart: beyond what batching changes (0.92 measured)


def assert_same_but_near_ties(llama, prompt: list[int], plain: list[int], drafted: list[int]) -> None:
    import llama_cpp

    at = next((i for i, (a, b) in enumerate(zip(plain, drafted, strict=False)) if a != b), None)
    if at is None:
        assert len(plain) == len(drafted) or min(len(plain), len(drafted)) > 0
        return
    llama.reset()
    llama.eval(prompt + plain[:at])  # one pass; then the logits of the last position
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),))
    gap = abs(float(logits[plain[at]]) - float(logits[drafted[at]]))
    assert gap < NEAR_TIE, (at, plain[at], drafted[at], gap)


def generate(llama, prompt: list[int], draft_max: int, grammar=None, n: int = 96):
    from goat_dagster.serving.local.generation import Budget, run_piece

    return run_piece(
        llama,
        prompt,
        phase="test",
        sampling={"temp": 0.0, "repeat_penalty": 1.0},
        budget=Budget(n),
        grammar=grammar,
        draft_max=draft_max,
    )


REPEAT = (
    "<|im_start|>user\nCopy this list exactly, twice:\n"
    "alpha.py beta.py gamma.py delta.py epsilon.py zeta.py eta.py theta.py<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.mark.integration
@pytest.mark.slow
def test_drafts_give_the_same_greedy_tokens_with_fewer_passes(llama):
    prompt = llama.tokenize(REPEAT.encode(), add_bos=True, special=True)
    llama.reset()
    plain = generate(llama, prompt, draft_max=0)
    llama.reset()
    drafted = generate(llama, prompt, draft_max=10)
    assert_same_but_near_ties(llama, prompt, plain.tokens, drafted.tokens)
    assert plain.draft.drafted == 0
    assert drafted.draft.accepted > 0, drafted.draft  # the list is copied from the prompt
    # the engine's own count: drafted tokens are evaluated in batches, so fewer passes than tokens
    assert drafted.evaluated == plain.evaluated == len(prompt)
    assert plain.draft.passes >= len(plain.tokens) > drafted.draft.passes > 0, (plain.draft, drafted.draft)


@pytest.mark.integration
@pytest.mark.slow
def test_drafts_keep_a_grammar_and_the_prefix_cache(llama):
    from goat_dagster.bench.prompts import load_prompt_set
    from goat_dagster.serving.local.tool_calling import arguments_grammar, render

    tools = load_prompt_set().tool_schemas
    read = next(t for t in tools if t["function"]["name"] == "Read")
    messages = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Read src/goat/alpha_module.py, then src/goat/alpha_module.py again."},
    ]
    text = render(messages, tools) + "functions.Read:\n"
    prompt = llama.tokenize(text.encode(), add_bos=True, special=True)
    out = {}
    for draft_max in (0, 10):
        llama.reset()
        out[draft_max] = generate(llama, prompt, draft_max, grammar=arguments_grammar(read), n=64)
    if out[10].finish_reason == "stop":  # a complete call: the grammar held
        assert isinstance(json.loads(out[10].text), dict)
    # the next completion (the prompt + what was generated + more) reuses everything cached
    follow = prompt + out[10].tokens + llama.tokenize(b"\n", add_bos=False)
    again = generate(llama, follow, draft_max=10, n=4)
    assert again.evaluated <= 2, again.timing()
    assert_same_but_near_ties(llama, prompt, out[0].tokens, out[10].tokens)


@pytest.mark.integration
@pytest.mark.slow
def test_a_draft_stops_where_the_grammar_does(llama):
    """Under a grammar, draft tokens the grammar forbids are never evaluated: the token sampled there
    is always one the grammar allows, so they could never be kept (a tool call's draft ends where
    its JSON object closes). The check runs on a copy: the grammar itself does not move."""
    from llama_cpp import llama_grammar

    grammar = llama_grammar.LlamaGrammar.from_string('root ::= "functions.Read:"\n', verbose=False)
    sampler = llama._init_sampler(temp=0.0, grammar=grammar)
    call = llama.tokenize(b"functions.Read:", add_bos=False)
    after = llama.tokenize(b'\n{"path": "a.py"}', add_bos=False)
    assert sampler.allowed_prefix(call + after) == len(call)
    assert sampler.allowed_prefix(after) == 0
    assert sampler.allowed_prefix(call) == len(call)  # unchanged by the checks before
    # the literal is in the context, followed by more: the draft is the literal's rest, no further
    prompt = llama.tokenize(
        REPEAT.replace("alpha.py", "functions.Read:").encode(), add_bos=True, special=True
    )
    llama.reset()
    piece = generate(llama, prompt, draft_max=32, grammar=grammar, n=16)
    assert piece.text == "functions.Read:"
    assert 0 < piece.draft.drafted == piece.draft.accepted, piece.draft
