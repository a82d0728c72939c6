"""Secret masking used by the trace sink, the Langfuse reader and exports."""

from __future__ import annotations

from goat_dagster.tracing.masking import MASK, mask_obj, mask_text, secret_values


def test_env_secret_values_and_key_patterns_are_masked():
    env = {"AZURE_API_KEY": "azk-verysecret-123456", "HOME": "/root", "SHORT_TOKEN": "abc"}
    secrets = secret_values(env)
    assert secrets == ["azk-verysecret-123456"]
    text = (
        "key azk-verysecret-123456 and sk-proj-abcdefghijklmnop and gsk_ABCDEFGH12345678 "
        "Authorization: Bearer eyJhbGciOi.payload.sig api_key=hunter22hunter"
    )
    masked = mask_text(text, secrets)
    for leaked in ("azk-verysecret", "sk-proj-abc", "gsk_ABCD", "eyJhbGciOi", "hunter22"):
        assert leaked not in masked, leaked
    assert masked.count(MASK) >= 5


def test_ids_and_numbers_survive():
    text = '{"call_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "total_tokens": 1234567, "model": "m-local"}'
    assert mask_text(text, []) == text
    assert mask_obj({"a": ["sk-abcdefghijkl", 3]}, []) == {"a": [MASK, 3]}
