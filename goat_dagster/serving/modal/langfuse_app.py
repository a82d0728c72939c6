"""`goat-langfuse`: Langfuse v4 on Modal, with its PostgreSQL, ClickHouse, Redis and MinIO in the same
container and their data on Volume `goat-langfuse-data`.

Deploy with `goat setup` (GOAT_LANGFUSE_ON_MODAL=1; it makes the keys, deploys, and writes the URL
to LANGFUSE_HOST), or by hand once the secrets exist::

    modal deploy -m goat_dagster.serving.modal.langfuse_app --env goat

What the app is (see `langfuse_server` for the processes): the published `langfuse/langfuse` image
(pinned tag) with Alpine's python3 (Modal's runtime needs a Python), the stores from Alpine's
packages and ClickHouse's static binary, and the worker copied out of the published
`langfuse/langfuse-worker` image of the same tag. One container, ever (`max_containers=1`: two
PostgreSQL servers on one Volume would each overwrite the other's commits), kept up
(`min_containers=1`: LiteLLM's OTLP exporter does not wait out a cold start, so traces sent to a
scaled-to-zero server would be dropped). Secrets `goat-langfuse` (the project's API keys, the URL)
and `goat-langfuse-server` (SALT, ENCRYPTION_KEY, NEXTAUTH_SECRET, the admin's password) come in
as environment variables when the container starts; nothing secret is in the image.

This module is imported in the container: it must need nothing but modal and the stdlib.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import modal

from goat_dagster.serving.modal.langfuse_server import (
    APP_NAME,
    CLASS_NAME,
    CLICKHOUSE_VERSION,
    DATA_DIR,
    LANGFUSE_VERSION,
    LANGFUSE_WEB_IMAGE,
    LANGFUSE_WORKER_IMAGE,
    SECRET_LANGFUSE_SERVER,
    VOLUME_LANGFUSE,
    WEB_PORT,
    Layout,
    Stack,
    image_commands,
)
from goat_dagster.serving.modal.spec import SECRET_LANGFUSE

CPU = 2.0
MEMORY_MB = 4096  # ClickHouse and two Node processes
STARTUP_TIMEOUT_S = 900  # first start: initdb, every migration, ClickHouse's first boot
MAX_INPUTS = 200  # concurrent requests (OTLP batches, the SDK, a browser)
PYTHON_SETUP = ["RUN apk add --no-cache python3 && ln -sf python3 /usr/bin/python"]
SECRETS = (SECRET_LANGFUSE, SECRET_LANGFUSE_SERVER)  # attached unconditionally (seed 002)


def spec_digest() -> str:
    """What is deployed, for the app's tag: a change redeploys (after stopping the old container)."""
    spec = {
        "images": [LANGFUSE_WEB_IMAGE, LANGFUSE_WORKER_IMAGE],
        "clickhouse": CLICKHOUSE_VERSION,
        "commands": PYTHON_SETUP + image_commands(),
        "resources": [CPU, MEMORY_MB, STARTUP_TIMEOUT_S, MAX_INPUTS],
        "secrets": list(SECRETS),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def langfuse_image() -> modal.Image:
    return modal.Image.from_registry(
        LANGFUSE_WEB_IMAGE, setup_dockerfile_commands=PYTHON_SETUP
    ).dockerfile_commands(image_commands())


def data_volume() -> modal.Volume:
    return modal.Volume.from_name(VOLUME_LANGFUSE, create_if_missing=True)


def public_url() -> str:
    """The URL Langfuse is reached at (NEXTAUTH_URL): Modal's own record of this app's web URL, else
    LANGFUSE_HOST from `goat-langfuse` (what goat setup wrote there after the deploy)."""
    try:
        server = modal.Cls.from_name(
            APP_NAME, CLASS_NAME, environment_name=os.environ.get("MODAL_ENVIRONMENT")
        )
        url = server().web.get_web_url()
        if url:
            return str(url).rstrip("/")
    except Exception as exc:  # a wrong NEXTAUTH_URL breaks UI sign-in links only, not ingestion
        print(f"[goat-langfuse] own URL not found ({type(exc).__name__}); using LANGFUSE_HOST", flush=True)
    return (os.environ.get("LANGFUSE_HOST") or f"http://localhost:{WEB_PORT}").rstrip("/")


class LangfuseServer:
    """The container: the stack starts on enter, serves port 3000, stops cleanly and commits on exit."""

    @modal.enter()
    def start(self) -> None:
        self.stack = Stack(Layout(), os.environ, public_url())
        self.stack.start_stores()
        self.stack.start_langfuse()

    @modal.web_server(WEB_PORT, startup_timeout=STARTUP_TIMEOUT_S)
    def web(self) -> None:
        """Langfuse's UI and API (`/api/public/otel`, `/api/public/health`, ...), started on enter."""

    @modal.exit()
    def stop(self) -> None:
        # Each store has flushed and closed its files; the commit makes that the Volume's state.
        self.stack.stop()
        data_volume().commit()


_server_raw = LangfuseServer  # the module-level name is rebound to the Modal Cls below (seed 002)


def build_langfuse_app() -> tuple[modal.App, Any]:
    app = modal.App(APP_NAME, tags={"goat-spec": spec_digest(), "goat-langfuse": LANGFUSE_VERSION})
    cls = app.cls(
        image=langfuse_image(),
        secrets=[modal.Secret.from_name(name) for name in SECRETS],
        volumes={DATA_DIR: data_volume()},
        min_containers=1,
        max_containers=1,
        timeout=24 * 3600,
        startup_timeout=STARTUP_TIMEOUT_S,
        cpu=CPU,
        memory=MEMORY_MB,
    )(modal.concurrent(max_inputs=MAX_INPUTS)(_server_raw))
    return app, cls


app, LangfuseServer = build_langfuse_app()
