"""Host side of Langfuse on Modal: the keys goat makes for it, deploying `goat-langfuse`, and writing
its URL where the rest of goat reads Langfuse settings.

The one place goat reads Langfuse settings is `GoatSettings` (LANGFUSE_PUBLIC_KEY,
LANGFUSE_SECRET_KEY, LANGFUSE_HOST): the trace export, `goat traces verify`, `goat doctor` and the
LiteLLM config (`langfuse_otel` when all three are set) use them on this machine; the proxy on
Modal gets the same three from the `goat-langfuse` secret. So `goat setup` writes the keys it
generated and, after the deploy, the server's URL to both: the env file (the `.env` you source) and
that secret. A record of the deployment goes to `$GOAT_HOME/modal/langfuse.json`.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dotenv import set_key

from goat_dagster import atomic, config
from goat_dagster.serving.modal.langfuse_app import build_langfuse_app, spec_digest
from goat_dagster.serving.modal.langfuse_server import (
    ADMIN_EMAIL,
    APP_NAME,
    CLASS_NAME,
    LANGFUSE_VERSION,
    PROJECT_KEYS,
    SERVER_SECRET_KEYS,
    WEB_METHOD,
)

PROJECT_KEY_NAMES = tuple(PROJECT_KEYS.values())  # LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY
SERVER_KEY_NAMES = tuple(SERVER_SECRET_KEYS.values())  # what `goat-langfuse-server` holds
HOST_KEY = "LANGFUSE_HOST"


def generate_keys() -> dict[str, str]:
    """Fresh values for every key Langfuse on Modal needs (the project's API keys in Langfuse's own
    format; ENCRYPTION_KEY 256 bits as 64 hex characters, as Langfuse requires)."""
    return {
        "LANGFUSE_PUBLIC_KEY": f"pk-lf-{uuid.uuid4()}",
        "LANGFUSE_SECRET_KEY": f"sk-lf-{uuid.uuid4()}",
        "LANGFUSE_SALT": secrets.token_urlsafe(32),
        "LANGFUSE_ENCRYPTION_KEY": secrets.token_hex(32),
        "LANGFUSE_NEXTAUTH_SECRET": secrets.token_urlsafe(32),
        "LANGFUSE_INIT_USER_PASSWORD": secrets.token_urlsafe(18),
    }


def write_env_values(env_file: str | Path, values: dict[str, str]) -> None:
    """Set keys in a dotenv file (replacing a line that has the key, else appending); the file is
    made readable by its owner only, since it holds secrets."""
    path = Path(env_file)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    for key, value in values.items():
        set_key(path, key, value, quote_mode="always")


def record_path() -> Path:
    return config.paths().home / "modal" / "langfuse.json"


def ensure_langfuse(cloud: Any, echo: Callable[[str], None]) -> str:
    """Deploy `goat-langfuse`, or find it current; its URL.

    A deployed app of another spec is stopped first (its exit hook stops the stores cleanly and
    commits the Volume), so two containers never hold the same PostgreSQL data directory."""
    digest = spec_digest()
    tags = cloud.app_tags(APP_NAME)
    if tags is not None and tags.get("goat-spec") != digest:
        echo(f"stopping {APP_NAME} (another version) before deploying Langfuse {LANGFUSE_VERSION}")
        cloud.stop(APP_NAME)
    if tags is None or tags.get("goat-spec") != digest:
        echo(f"deploying {APP_NAME} (Langfuse {LANGFUSE_VERSION}) to Modal environment {cloud.environment}")
        app, _ = build_langfuse_app()
        cloud.deploy(app)
    url = cloud.cls_web_url(APP_NAME, CLASS_NAME, WEB_METHOD)
    if not url:
        raise RuntimeError(f"{APP_NAME} was deployed but Modal has no URL for it in {cloud.environment}")
    url = url.rstrip("/")
    record = {
        "app_name": APP_NAME,
        "url": url,
        "environment": cloud.environment,
        "langfuse_version": LANGFUSE_VERSION,
        "spec_digest": digest,
        "admin_email": ADMIN_EMAIL,
        "checked_at": datetime.now(UTC).isoformat(),
    }
    atomic.write_text(record_path(), json.dumps(record, indent=2))
    return url


def load_record() -> dict[str, Any] | None:
    path = record_path()
    return json.loads(path.read_text()) if path.is_file() else None
