"""Masking secrets out of text before it is written anywhere (trace sink, exports, logs).

Two nets: the exact values of secret-looking environment variables of this process (the proxy has
the provider keys in its environment, so this catches them verbatim wherever they show up), and
patterns of common key formats for values that came from elsewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),  # OpenAI / LiteLLM / Anthropic (sk-ant-…) style
    re.compile(r"\bgsk_[A-Za-z0-9]{8,}"),  # Groq
    re.compile(r"\b(?:pk|sk)-lf-[A-Za-z0-9\-]{8,}"),  # Langfuse
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),  # Hugging Face
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/]{8,}=*"),
    re.compile(r"(?i)(api[_-]?key|secret|password|token)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]
_MIN_SECRET_LEN = 6


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like they hold secrets, longest first."""
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if _SECRET_NAME.search(k) and v and len(v) >= _MIN_SECRET_LEN}
    return sorted(vals, key=len, reverse=True)


def mask_text(text: str, secrets: list[str] | None = None) -> str:
    for s in secret_values() if secrets is None else secrets:
        if s in text:
            text = text.replace(s, MASK)
    for pat in _PATTERNS:
        if pat.groups >= 2:
            text = pat.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        else:
            text = pat.sub(MASK, text)
    return text


def mask_obj(obj: Any, secrets: list[str] | None = None) -> Any:
    """`mask_text` applied to every string inside a JSON-like structure."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, str):
        return mask_text(obj, secrets)
    if isinstance(obj, dict):
        return {k: mask_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [mask_obj(v, secrets) for v in obj]
    return obj
