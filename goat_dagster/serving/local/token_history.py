"""The token ids of the last turn, so that the next prompt of the same conversation spells the
model's own answer with the tokens the model generated (worker processes only).

An agent sends its whole conversation with every call, the model's last answer included, and the
handler renders it as text again. Tokenizing that text gives the canonical tokens of the answer, but
the model need not have generated those: under a grammar especially, it may spell `functions` as
`function` + `s`. Then the prompt differs from what is in the KV cache from the first token of the
answer on, and every call evaluated the whole previous answer again (measured in the demo: the
cache ended exactly where the previous prompt did). Here the next prompt's text is matched, byte for
byte, against the previous prompt and the tokens of its answer; as far as they agree those very
tokens are reused (so the KV cache holds them already), and only the rest is tokenized. The text the
model reads is the same; only its spelling in tokens is the one the model chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenHistory:
    """The last prompt (text and tokens) and the tokens of its answer, for one `Llama`."""

    owner: int = 0  # id() of the Llama the tokens belong to
    text: bytes = b""
    tokens: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)

    def remember(self, llama: Any, text: bytes, tokens: list[int], answer: list[int]) -> None:
        self.owner, self.text, self.tokens, self.answer = id(llama), text, list(tokens), list(answer)

    def tokenize(self, llama: Any, text: bytes) -> list[int]:
        """`text` as tokens, with BOS: the remembered ones where the text is the remembered text."""
        if id(llama) != self.owner or not self.text or not text.startswith(self.text):
            return llama.tokenize(text, add_bos=True, special=True)
        out, pos = list(self.tokens), len(self.text)
        ends = [pos]  # byte offset after each reused answer token
        for token in self.answer:
            piece = llama.detokenize([token])
            if not piece or not text.startswith(piece, pos):
                break
            out.append(token)
            pos += len(piece)
            ends.append(pos)
        while len(ends) > 1 and pos < len(text) and text[pos] & 0xC0 == 0x80:  # inside a character
            out.pop()
            ends.pop()
            pos = ends[-1]
        return out + llama.tokenize(text[pos:], add_bos=False, special=True)
