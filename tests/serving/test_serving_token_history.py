"""The next prompt of a conversation spells the model's previous answer with the tokens the model
generated (`serving/local/token_history.py`), with SmolLM2's real tokenizer: the text is exactly the
rendered one, the answer's tokens are reused as far as the text agrees, and only the rest is
tokenized."""

from __future__ import annotations

from pathlib import Path

import pytest

from goat_dagster.serving.local.token_history import TokenHistory


@pytest.fixture(scope="module")
def vocab(smollm2: Path):
    from llama_cpp import Llama

    return Llama(str(smollm2), vocab_only=True, verbose=False)


def text_of(vocab, tokens: list[int]) -> bytes:
    return vocab.detokenize(tokens, special=True)


def same_text(vocab, tokens: list[int], text: bytes) -> bool:
    """`tokens` spell `text` (with BOS if the vocabulary adds one)."""
    return text_of(vocab, tokens) == text_of(vocab, vocab.tokenize(text, add_bos=True, special=True))


PROMPT = b"<|im_start|>user\nRead the file.<|im_end|>\n<|im_start|>assistant\n"


def test_the_answer_keeps_the_tokens_the_model_generated(vocab):
    history = TokenHistory()
    prompt = history.tokenize(vocab, PROMPT)
    assert prompt == vocab.tokenize(PROMPT, add_bos=True, special=True)  # nothing remembered yet
    # the model spelled `functions` as `function` + `s`: not what tokenizing the text gives
    answer = [*vocab.tokenize(b"function", add_bos=False), *vocab.tokenize(b"s.Read:", add_bos=False)]
    answer += vocab.tokenize(b'\n{ "path": "a.py" }\n', add_bos=False)
    assert vocab.tokenize(text_of(vocab, answer), add_bos=False) != answer
    history.remember(vocab, PROMPT, prompt, answer)

    tail = b"<|im_end|>\n<|im_start|>tool\nhello<|im_end|>\n<|im_start|>assistant\n"
    following = PROMPT + text_of(vocab, answer) + tail
    tokens = history.tokenize(vocab, following)
    assert tokens == prompt + answer + vocab.tokenize(tail, add_bos=False, special=True)
    assert same_text(vocab, tokens, following)

    # an answer sent back only in part (the agent kept the first call): reused as far as it agrees
    part = PROMPT + b'functions.Read:\n{ "path": "b.py" }\n' + tail
    tokens = history.tokenize(vocab, part)
    assert tokens[: len(prompt) + 2] == prompt + answer[:2]
    assert same_text(vocab, tokens, part)

    # another conversation: tokenized as it is
    other = b"<|im_start|>user\nSomething else<|im_end|>\n"
    assert history.tokenize(vocab, other) == vocab.tokenize(other, add_bos=True, special=True)
