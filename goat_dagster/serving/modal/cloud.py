"""The edge to Modal's API: every call goat makes to Modal's servers goes through `ModalCloud`.

Methods block; quick ones (lookups) are bounded by GOAT_MODAL_TIMEOUT_S. Everything else in
`serving/modal` runs without Modal: tests swap this edge for one that answers from a loopback
server. When Modal cannot be used, `ModalUnavailable` says whether it is "not logged in" or
"unreachable" and what to do.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import modal
import modal.config
import modal.exception

from goat_dagster import config
from goat_dagster.serving.backend import ServingError
from goat_dagster.serving.modal import weights_app
from goat_dagster.serving.modal.spec import SERVE_FUNCTION

T = TypeVar("T")


class ModalUnavailable(ServingError):
    """Modal cannot be used from here. `reason`: "not logged in" | "unreachable"; `fix`: what to do."""

    def __init__(self, reason: str, detail: str, fix: str) -> None:
        self.reason, self.detail, self.fix = reason, detail, fix
        super().__init__(f"Modal {reason}: {detail} — {fix}")


# ---- the edge to Modal's servers ------------------------------------------------------------------


class ModalCloud:
    """Every call this project makes to Modal's API. Methods block; quick ones are bounded."""

    def __init__(
        self,
        environment: str | None = None,
        *,
        token_id: str | None = None,
        token_secret: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        s = config.settings()
        self.environment = environment or s.modal_environment
        self._token = (token_id, token_secret) if token_id and token_secret else None
        self.timeout_s = s.modal_timeout_s if timeout_s is None else timeout_s
        self._client: Any = None

    # -- connection ---------------------------------------------------------------------------

    def credentials_present(self) -> bool:
        if self._token:
            return True
        return bool(modal.config.config.get("token_id") and modal.config.config.get("token_secret"))

    @staticmethod
    def server_url() -> str:
        """Modal's API URL(s); the default setting lists two, comma-separated."""
        return str(modal.config.config.get("server_url"))

    def check(self) -> None:
        """Raise `ModalUnavailable` unless credentials exist and Modal's API answers them."""
        if not self.credentials_present():
            raise ModalUnavailable(
                "not logged in",
                "no Modal token (~/.modal.toml or MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)",
                "run `modal setup` (or `modal token new`), or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET",
            )
        errors = []
        for raw in self.server_url().split(","):
            url = urlparse(raw.strip())
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                socket.create_connection((url.hostname or "", port), timeout=min(self.timeout_s, 10)).close()
                break
            except OSError as exc:
                errors.append(f"{url.hostname}:{port} ({exc.strerror or exc})")
        else:
            raise ModalUnavailable(
                "unreachable",
                "cannot connect to " + ", ".join(errors),
                "check the network / proxy settings, or MODAL_SERVER_URL if you set it",
            )
        self._call(lambda: modal.Environment.objects.list(client=self.client()))

    def client(self) -> Any:
        if self._client is None:
            if self._token:
                self._client = modal.Client.from_credentials(*self._token)
            else:
                self._client = modal.Client.from_env()
        return self._client

    def _call(self, fn: Callable[[], T], *, timeout_s: float | None = -1) -> T:
        """Run a Modal call; map auth / connection failures to `ModalUnavailable`.

        Quick metadata calls are bounded (Modal's client retries a dead server for about a
        minute); deploys and downloads pass `timeout_s=None`.
        """
        limit = self.timeout_s if timeout_s == -1 else timeout_s
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        if limit is None:
            run()
        else:
            worker = threading.Thread(target=run, daemon=True, name="modal-call")
            worker.start()
            worker.join(limit)
            if worker.is_alive():
                raise ModalUnavailable(
                    "unreachable",
                    f"no answer from {self.server_url()} within {limit:.0f}s",
                    "check the network, or retry; GOAT_MODAL_TIMEOUT_S raises the limit",
                )
        err = box.get("error")
        if err is None:
            return box["value"]
        if isinstance(err, modal.exception.AuthError):
            raise ModalUnavailable(
                "not logged in",
                str(err).split(". ")[0],
                "run `modal setup` or `modal token new`; check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET",
            ) from None
        if isinstance(err, modal.exception.ConnectionError | ConnectionError | OSError):
            raise ModalUnavailable("unreachable", str(err), "check the network, then retry") from None
        raise err

    # -- apps ------------------------------------------------------------------------------------

    def app_tags(self, app_name: str) -> dict[str, str] | None:
        """The tags of a deployed app, or None when no app of that name is deployed."""

        def lookup() -> dict[str, str] | None:
            try:
                found = modal.App.lookup(app_name, environment_name=self.environment, client=self.client())
                return dict(found.get_tags())
            except modal.exception.NotFoundError:
                return None

        return self._call(lookup)

    def deploy(self, app: Any) -> None:
        def run() -> None:
            with modal.enable_output():
                app.deploy(environment_name=self.environment, client=self.client())

        self._call(run, timeout_s=None)

    def web_url(self, app_name: str, function: str = SERVE_FUNCTION) -> str | None:
        """The function's public URL, or None when the app (or function) is not deployed."""

        def lookup() -> str | None:
            fn = modal.Function.from_name(
                app_name, function, environment_name=self.environment, client=self.client()
            )
            try:
                url = fn.get_web_url()
            except modal.exception.NotFoundError:
                return None
            if not url:
                raise RuntimeError(f"{app_name}.{function} is deployed but has no web URL")
            return str(url)

        return self._call(lookup)

    def cls_web_url(self, app_name: str, cls_name: str, method: str) -> str | None:
        """The public URL of a class's web method (`goat-langfuse`), or None when not deployed."""

        def lookup() -> str | None:
            cls = modal.Cls.from_name(
                app_name, cls_name, environment_name=self.environment, client=self.client()
            )
            try:
                url = getattr(cls(), method).get_web_url()
            except modal.exception.NotFoundError:
                return None
            return str(url) if url else None

        return self._call(lookup)

    def stop(self, app_name: str) -> bool:
        def run() -> bool:
            try:
                modal.App.lookup(app_name, environment_name=self.environment, client=self.client()).stop()
                return True
            except modal.exception.NotFoundError:
                return False

        return self._call(run)

    # -- weights --------------------------------------------------------------------------------

    def download_weights(self, repo: str, revision: str, allow_patterns: list[str] | None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with weights_app.app.run(environment_name=self.environment, client=self.client()):
                return weights_app.download.remote(repo, revision, allow_patterns)

        return self._call(run, timeout_s=None)

    # -- environment, secrets, volumes (goat setup / doctor) ---------------------------------------

    def environments(self) -> set[str]:
        return self._call(lambda: {e.name for e in modal.Environment.objects.list(client=self.client())})

    def secrets(self) -> set[str]:
        return self._call(
            lambda: {
                s.name
                for s in modal.Secret.objects.list(environment_name=self.environment, client=self.client())
            }
        )

    def volumes(self) -> set[str]:
        return self._call(
            lambda: {
                v.name
                for v in modal.Volume.objects.list(environment_name=self.environment, client=self.client())
            }
        )

    def create_environment(self) -> None:
        self._call(lambda: modal.Environment.objects.create(self.environment, client=self.client()))

    def put_secret(self, name: str, values: dict[str, str], *, exists: bool) -> None:
        """Create the secret, or merge `values` into the existing one (other keys are kept)."""

        def run() -> None:
            if exists:
                modal.Secret.from_name(name, environment_name=self.environment, client=self.client()).update(
                    values
                )
            else:
                modal.Secret.objects.create(
                    name, values, environment_name=self.environment, client=self.client()
                )

        self._call(run)

    def create_volume(self, name: str) -> None:
        self._call(
            lambda: modal.Volume.objects.create(
                name, allow_existing=True, environment_name=self.environment, client=self.client()
            )
        )
