"""Scoped keys for sandboxes, checked by the proxy without a database.

LiteLLM's own virtual keys (`/key/generate`) live in a PostgreSQL database that the proxy reaches
through Prisma. Prisma Client Python needs its query/schema engine binaries, which it downloads at
first use from Prisma's own binary host; on machines that reach only the package registries that
download fails (`getaddrinfo ENOTFOUND binaries.prisma.sh`), so database-backed virtual keys cannot
be had here. Instead the proxy is configured with `general_settings.custom_auth` pointing at
`user_api_key_auth` below:

- the master key (`LITELLM_MASTER_KEY`, in the proxy's environment and in `$GOAT_HOME/litellm`,
  mode 0600) authenticates as proxy admin — it is for the host-side harness and never handed to a
  sandbox;
- a *scoped key* (`sk-goat-<claims>.<signature>`) is an HMAC-SHA256-signed statement "may call
  these model names until this time, for this run", signed with a key derived from the master key.
  The proxy verifies the signature and expiry and returns a `UserAPIKeyAuth` whose `models` list
  LiteLLM enforces (`custom_auth_run_common_checks: true`); anything else is a 401.

What a scoped key cannot do that a virtual key could: be revoked one by one (it expires, or every
key dies when the master key is rotated) or carry a spend budget (LiteLLM tracks budgets in the
database; the harness's own `--budget-usd` applies instead). It holds no provider key and no master
key, so a sandbox that leaks it leaks at most model access until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from goat_dagster import config

SCOPED_PREFIX = "sk-goat-"
_DERIVE_LABEL = b"goat-dagster scoped proxy keys v1"


class ScopedKeyError(ValueError):
    pass


@dataclass(frozen=True)
class ScopedClaims:
    models: tuple[str, ...]
    run_id: str | None
    expires_at: float  # unix seconds
    ids: dict[str, str] = field(default_factory=dict)  # the attempt it is for: trace_id, task_id, ...

    def trace_metadata(self) -> dict[str, str]:
        """What the trace sink files a call under when the request itself carries no metadata (an
        external agent calling the proxy with this key): the run, and the attempt's ids."""
        out = {f"goat_{k}": v for k, v in self.ids.items() if k != "trace_id"}
        if self.run_id:
            out["goat_run_id"] = self.run_id
        if "trace_id" in self.ids:
            out["trace_id"] = self.ids["trace_id"]
        return out


def _signing_key(master_key: str) -> bytes:
    return hmac.new(master_key.encode(), _DERIVE_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_scoped_key(
    master_key: str,
    *,
    models: list[str],
    run_id: str | None = None,
    ttl_s: float,
    ids: dict[str, str] | None = None,
) -> str:
    """A key that may call only `models` (gateway names) through the proxy, for `ttl_s` seconds;
    `ids` (trace_id, task_id, epoch, suite) say which attempt its calls belong to."""
    if not models:
        raise ScopedKeyError("a scoped key needs at least one model name")
    claims: dict[str, Any] = {"m": sorted(set(models)), "r": run_id, "e": int(time.time() + ttl_s)}
    if ids:
        claims["g"] = {str(k): str(v) for k, v in ids.items()}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    sig = _b64(hmac.new(_signing_key(master_key), body.encode(), hashlib.sha256).digest())
    return f"{SCOPED_PREFIX}{body}.{sig}"


def verify_scoped_key(master_key: str, key: str, *, now: float | None = None) -> ScopedClaims:
    """The claims of a valid, unexpired scoped key; `ScopedKeyError` otherwise."""
    if not key.startswith(SCOPED_PREFIX) or "." not in key:
        raise ScopedKeyError("not a goat scoped key")
    body, sig = key[len(SCOPED_PREFIX) :].rsplit(".", 1)
    want = _b64(hmac.new(_signing_key(master_key), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, sig):
        raise ScopedKeyError("bad signature")
    try:
        claims = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError):
        raise ScopedKeyError("malformed claims") from None
    expires = float(claims.get("e", 0))
    if expires < (time.time() if now is None else now):
        raise ScopedKeyError("expired")
    ids = claims.get("g") if isinstance(claims.get("g"), dict) else {}
    return ScopedClaims(
        models=tuple(claims.get("m") or ()), run_id=claims.get("r"), expires_at=expires, ids=ids
    )


async def user_api_key_auth(request: Any, api_key: str) -> Any:
    """LiteLLM `custom_auth` hook (runs inside the proxy): master key or a valid scoped key."""
    # the proxy's own modules: importing litellm.proxy takes seconds, and the host imports this
    # module only to mint keys
    from fastapi import HTTPException
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

    configured = config.settings().litellm_master_key  # in the proxy's environment
    master = configured.get_secret_value() if configured else ""
    key = (api_key or "").removeprefix("Bearer ").strip()
    if master and hmac.compare_digest(key.encode(), master.encode()):
        return UserAPIKeyAuth(api_key=key, user_role=LitellmUserRoles.PROXY_ADMIN)
    try:
        claims = verify_scoped_key(master, key)
    except ScopedKeyError as exc:
        raise HTTPException(status_code=401, detail=f"invalid proxy key: {exc}") from None
    return UserAPIKeyAuth(
        api_key=hashlib.sha256(key.encode()).hexdigest(),
        key_alias=f"goat-scoped:{claims.run_id or '-'}",
        user_role=LitellmUserRoles.INTERNAL_USER,
        models=list(claims.models),
        expires=datetime.fromtimestamp(claims.expires_at, UTC),
        metadata=claims.trace_metadata(),
    )
