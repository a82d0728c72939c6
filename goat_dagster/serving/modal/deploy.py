"""Weights, endpoints and the proxy on Modal: what `model_weights` and `serving_endpoint` call.

- `ensure_modal_weights(entry, log) -> dict`: the weights of a `provider: modal` model in Volume
  `goat-model-cache` at the pinned revision (downloaded by the `goat-weights` function); returns and
  records what is there (commit, files, bytes, etags).
- `ensure_modal_endpoint(entry, log) -> Endpoint`: the model's `goat-vllm-<key>` app deployed and
  current (found by name; redeployed when its spec changed), `/health` waited for, one request
  answered; URL and cold-start seconds recorded with `save_endpoint`.
- `stop_modal_endpoint(entry, log) -> bool`: stop (undeploy) the app; the next ensure redeploys.
- `ensure_modal_services(config, log) -> str`: the LiteLLM proxy app `goat-services`, its URL.

Every call to Modal's servers goes through `ModalCloud`, a thin edge; everything else here runs
without Modal (tests swap the edge for one that answers from a loopback server). When Modal cannot
be used, `ModalUnavailable` says whether it is "not logged in" or "unreachable" and what to do.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import httpx

from goat_dagster import config
from goat_dagster.registry import HFWeights, ModelEntry, load_registry, slugify
from goat_dagster.serving.endpoint import Endpoint, load_endpoint, save_endpoint
from goat_dagster.serving.modal.spec import (
    HF_CACHE_DIR,
    SECRET_VLLM,
    SERVE_FUNCTION,
    VLLM_KEY_ENV,
    VOLUME_MODELS,
    ServeSpec,
    base_spec,
    fits_message,
    is_commit,
)

T = TypeVar("T")


class LogLike(Protocol):
    """A `logging.Logger` or Dagster's `context.log`."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class ModalUnavailable(RuntimeError):
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
        import modal.config

        return bool(modal.config.config.get("token_id") and modal.config.config.get("token_secret"))

    @staticmethod
    def server_url() -> str:
        """Modal's API URL(s); the default setting lists two, comma-separated."""
        import modal.config

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
        self._call(lambda: self._modal().Environment.objects.list(client=self.client()))

    def _modal(self) -> Any:
        import modal

        return modal

    def client(self) -> Any:
        if self._client is None:
            modal = self._modal()
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
        import modal.exception as mexc

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
        if isinstance(err, mexc.AuthError):
            raise ModalUnavailable(
                "not logged in",
                str(err).split(". ")[0],
                "run `modal setup` or `modal token new`; check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET",
            ) from None
        if isinstance(err, mexc.ConnectionError | ConnectionError | OSError):
            raise ModalUnavailable("unreachable", str(err), "check the network, then retry") from None
        raise err

    # -- apps ------------------------------------------------------------------------------------

    def app_tags(self, app_name: str) -> dict[str, str] | None:
        """The tags of a deployed app, or None when no app of that name is deployed."""
        modal = self._modal()

        def lookup() -> dict[str, str] | None:
            try:
                found = modal.App.lookup(app_name, environment_name=self.environment, client=self.client())
                return dict(found.get_tags())
            except modal.exception.NotFoundError:
                return None

        return self._call(lookup)

    def deploy(self, app: Any) -> None:
        modal = self._modal()

        def run() -> None:
            with modal.enable_output():
                app.deploy(environment_name=self.environment, client=self.client())

        self._call(run, timeout_s=None)

    def web_url(self, app_name: str, function: str = SERVE_FUNCTION) -> str | None:
        """The function's public URL, or None when the app (or function) is not deployed."""
        modal = self._modal()

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

    def stop(self, app_name: str) -> bool:
        modal = self._modal()

        def run() -> bool:
            try:
                modal.App.lookup(app_name, environment_name=self.environment, client=self.client()).stop()
                return True
            except modal.exception.NotFoundError:
                return False

        return self._call(run)

    # -- weights --------------------------------------------------------------------------------

    def download_weights(self, repo: str, revision: str, allow_patterns: list[str] | None) -> dict[str, Any]:
        from goat_dagster.serving.modal import weights_app as modal_weights

        def run() -> dict[str, Any]:
            with modal_weights.app.run(environment_name=self.environment, client=self.client()):
                return modal_weights.download.remote(repo, revision, allow_patterns)

        return self._call(run, timeout_s=None)

    # -- environment, secrets, volumes (goat setup / doctor) ---------------------------------------

    def environments(self) -> set[str]:
        modal = self._modal()
        return self._call(lambda: {e.name for e in modal.Environment.objects.list(client=self.client())})

    def secrets(self) -> set[str]:
        modal = self._modal()
        return self._call(
            lambda: {
                s.name
                for s in modal.Secret.objects.list(environment_name=self.environment, client=self.client())
            }
        )

    def volumes(self) -> set[str]:
        modal = self._modal()
        return self._call(
            lambda: {
                v.name
                for v in modal.Volume.objects.list(environment_name=self.environment, client=self.client())
            }
        )

    def create_environment(self) -> None:
        modal = self._modal()
        self._call(lambda: modal.Environment.objects.create(self.environment, client=self.client()))

    def put_secret(self, name: str, values: dict[str, str], *, exists: bool) -> None:
        """Create the secret, or merge `values` into the existing one (other keys are kept)."""
        modal = self._modal()

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
        modal = self._modal()
        self._call(
            lambda: modal.Volume.objects.create(
                name, allow_existing=True, environment_name=self.environment, client=self.client()
            )
        )


# ---- specs from the registry ----------------------------------------------------------------------


def weights_record_path(model_key: str) -> Path:
    return config.paths().models / "modal" / f"{slugify(model_key)}.json"


def load_weights_record(model_key: str) -> dict[str, Any] | None:
    p = weights_record_path(model_key)
    return json.loads(p.read_text()) if p.exists() else None


def save_weights_record(record: dict[str, Any]) -> Path:
    p = weights_record_path(record["model_key"])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(p)
    return p


def spec_for(entry: ModelEntry, weights: dict[str, Any] | None = None) -> ServeSpec:
    """The app spec for a modal entry. A branch revision is served at the commit the weights
    record resolved it to (and the gpt-oss speculator at the commit downloaded with it)."""
    revision = None
    w = entry.weights
    if (
        weights
        and isinstance(w, HFWeights)
        and not is_commit(w.revision)
        and (weights.get("repo"), weights.get("revision")) == (w.repo, w.revision)
    ):
        revision = weights.get("commit")
    if entry.engine == "vllm-gpt-oss":
        from goat_dagster.serving.modal.gpt_oss_app import gpt_oss_spec

        extra = {x["repo"]: x["commit"] for x in (weights or {}).get("extra", [])}
        spec = gpt_oss_spec(entry, revision=revision)
        draft = (spec.engine_args.get("speculative-config") or {}).get("model")
        if draft in extra:
            spec = gpt_oss_spec(entry, revision=revision, speculator_revision=extra[draft])
        return spec
    return base_spec(entry, revision=revision)


def spec_for_key(key: str, expect_engine: str | None = None) -> ServeSpec:
    """For `GOAT_MODEL=<key> modal deploy -m ...`: the spec of that registry entry, checked."""
    entry = load_registry().get(key)
    if entry.provider != "modal":
        raise ValueError(
            f"GOAT_MODEL={key}: provider is {entry.provider!r}; only provider: modal models deploy here"
        )
    if expect_engine and entry.engine != expect_engine:
        module = "modal_gpt_oss" if entry.engine == "vllm-gpt-oss" else "modal_vllm"
        raise ValueError(
            f"GOAT_MODEL={key} has engine {entry.engine!r}: deploy with -m goat_dagster.serving.{module}"
        )
    return spec_for(entry, load_weights_record(entry.key))


def build_app_for(spec: ServeSpec) -> tuple[Any, Any]:
    if spec.engine == "vllm-gpt-oss":
        from goat_dagster.serving.modal.gpt_oss_app import build_gpt_oss_app

        return build_gpt_oss_app(spec)
    from goat_dagster.serving.modal.vllm_app import build_vllm_app

    return build_vllm_app(spec)


def _hf_cache_path(repo: str, commit: str) -> str:
    return f"{HF_CACHE_DIR}/hub/models--{repo.replace('/', '--')}/snapshots/{commit}"


# ---- weights ----------------------------------------------------------------------------------


def ensure_modal_weights(
    entry: ModelEntry, log: LogLike, *, cloud: ModalCloud | None = None
) -> dict[str, Any]:
    """Download (or find) the entry's weights in Volume `goat-model-cache` by revision; record them.

    Returns {model_key, repo, revision, commit, pinned, volume, path, files, n_files, bytes,
    extra (the gpt-oss speculator), environment, download_s, checked_at}; saved to
    $GOAT_HOME/models/modal/<slug>.json, where `ensure_modal_endpoint` reads the commit back.
    """
    w = entry.weights
    if entry.provider != "modal" or not isinstance(w, HFWeights):
        raise ValueError(f"{entry.key}: ensure_modal_weights is for provider: modal models with hf weights")
    cloud = cloud or ModalCloud()
    spec = spec_for(entry)
    log.info(
        f"{entry.key}: weights {w.repo}@{w.revision} -> Modal volume {VOLUME_MODELS} ({cloud.environment})"
    )
    t0 = time.monotonic()
    main = cloud.download_weights(w.repo, w.revision, list(w.files))
    if w.pinned and main["commit"] != w.revision:
        raise RuntimeError(f"{entry.key}: asked for {w.repo}@{w.revision}, the volume holds {main['commit']}")
    extra = []
    draft = (spec.engine_args.get("speculative-config") or {}).get("model")
    if draft:
        got = cloud.download_weights(draft, "main", None)
        extra.append({k: got[k] for k in ("repo", "commit", "n_files", "bytes")})
    record = {
        "model_key": entry.key,
        "repo": w.repo,
        "revision": w.revision,
        "commit": main["commit"],
        "pinned": w.pinned,
        "volume": VOLUME_MODELS,
        "path": _hf_cache_path(w.repo, main["commit"]),
        "files": main["files"],
        "n_files": main["n_files"],
        "bytes": main["bytes"],
        "extra": extra,
        "environment": cloud.environment,
        "download_s": round(time.monotonic() - t0, 1),
        "checked_at": datetime.now(UTC).isoformat(),
    }
    if not w.pinned:
        log.warning(
            f"{entry.key}: revision {w.revision!r} resolved to {main['commit']}; serving that commit. "
            f"Pin it in models.yaml (weights.revision: {main['commit']}) to make runs reproducible."
        )
    problem = fits_message(spec, record["bytes"])
    if problem:
        log.warning(problem)
    save_weights_record(record)
    log.info(f"{entry.key}: {record['n_files']} files, {record['bytes'] / 1e9:.2f} GB at {record['path']}")
    return record


# ---- health and cold start ----------------------------------------------------------------------


@dataclass
class ProbeResult:
    healthy: bool
    health_s: float | None = None  # first request -> /health 200
    first_answer_s: float | None = None  # first request -> first chat completion answered
    attempts: int = 0
    models: list[str] = field(default_factory=list)
    error: str | None = None


def vllm_api_key() -> str:
    """The bearer token the goat-vllm-* apps require on /v1 (VLLM_API_KEY, the value `goat setup`
    stored in the goat-vllm secret)."""
    configured = config.settings().vllm_api_key
    key = configured.get_secret_value() if configured else None
    if not key:
        raise ValueError(
            f"{VLLM_KEY_ENV} is not set: the goat-vllm-* apps answer /v1 only with it. Put the value "
            f"of the {SECRET_VLLM} Modal secret in the environment (add {VLLM_KEY_ENV} to .env, then "
            "`goat setup` stores it there too)"
        )
    return key


def probe_endpoint(
    url: str,
    served_name: str,
    *,
    timeout_s: float,
    api_key: str | None = None,
    log: LogLike | None = None,
    poll_s: float = 2.0,
) -> ProbeResult:
    """Wait for `<url>/health` to answer 200 (a scaled-to-zero app starts on this first request; vLLM
    leaves /health open), then ask one tiny chat completion with `api_key` as bearer token. Times
    are measured from the first request."""
    base = url.rstrip("/")
    res = ProbeResult(healthy=False)
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    last = "no answer"
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(follow_redirects=True, headers=headers) as http:
        while True:
            res.attempts += 1
            remaining = max(deadline - time.monotonic(), 1.0)
            try:
                r = http.get(f"{base}/health", timeout=httpx.Timeout(min(150.0, remaining), connect=10.0))
                if r.status_code == 200:
                    break
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"[:200]
            if time.monotonic() >= deadline:
                res.error = f"{base}/health did not answer 200 within {timeout_s:.0f}s (last: {last})"
                return res
            if log and res.attempts % 15 == 1:
                log.info(f"waiting for {base}/health ({last}; {time.monotonic() - t0:.0f}s)")
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0)))
        res.health_s = round(time.monotonic() - t0, 2)
        try:
            r = http.get(f"{base}/v1/models", timeout=30)
            if r.status_code == 200:
                res.models = [m.get("id", "") for m in r.json().get("data", [])]
            body = {
                "model": served_name,
                "messages": [{"role": "user", "content": "Reply with the single word OK."}],
                "max_tokens": 8,
                "temperature": 0,
            }
            r = http.post(
                f"{base}/v1/chat/completions", json=body, timeout=max(deadline - time.monotonic(), 60)
            )
            r.raise_for_status()
            if not r.json().get("choices"):
                raise ValueError(f"no choices in the answer: {r.text[:200]}")
        except (httpx.HTTPError, ValueError) as exc:
            res.error = f"/health is up but a chat completion failed: {exc}"[:300]
            return res
        res.first_answer_s = round(time.monotonic() - t0, 2)
        res.healthy = True
    return res


def smoke_test(url: str, served_name: str, *, prompt: str, timeout_s: float) -> str:
    """What the apps' `smoke` entrypoint prints: health, cold start, an answer and a tool call."""
    api_key = vllm_api_key()
    probe = probe_endpoint(url, served_name, timeout_s=timeout_s, api_key=api_key)
    if not probe.healthy:
        raise SystemExit(f"FAILED {url}: {probe.error}")
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    with httpx.Client(timeout=300, headers={"authorization": f"Bearer {api_key}"}) as http:
        chat = http.post(
            f"{url.rstrip('/')}/v1/chat/completions",
            json={"model": served_name, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64},
        ).json()
        tools = http.post(
            f"{url.rstrip('/')}/v1/chat/completions",
            json={
                "model": served_name,
                "messages": [{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
                "tools": [tool],
                "tool_choice": "auto",
                "temperature": 0.3,
                "max_tokens": 128,
            },
        ).json()
    calls = tools["choices"][0]["message"].get("tool_calls") or []
    return "\n".join(
        [
            f"url: {url}",
            f"models: {', '.join(probe.models)}",
            f"healthy after {probe.health_s}s, first answer after {probe.first_answer_s}s",
            f"answer: {chat['choices'][0]['message'].get('content')!r}",
            f"tool calls: {[c['function']['name'] + ' ' + c['function']['arguments'] for c in calls]}",
        ]
    )


# ---- endpoints -----------------------------------------------------------------------------------


def ensure_modal_endpoint(
    entry: ModelEntry, log: LogLike, *, cloud: ModalCloud | None = None, redeploy: bool = False
) -> Endpoint:
    """Deploy (or find, if current) the model's app, wait for it to answer, record the endpoint.

    The app is current when its `goat-spec` tag equals the spec built from models.yaml (and the
    weights record), so a registry change redeploys and nothing else does. The returned endpoint
    (also saved with `save_endpoint`) has `healthy=False` and `detail["error"]` if the server never
    answered; `ModalUnavailable` is raised if Modal itself cannot be used; `ValueError` if the
    recorded weights cannot fit the GPUs (before any GPU is paid for).
    """
    if entry.provider != "modal":
        raise ValueError(f"{entry.key}: ensure_modal_endpoint is for provider: modal models")
    api_key = vllm_api_key()  # before anything is deployed: without it nothing could be asked
    cloud = cloud or ModalCloud()
    weights = load_weights_record(entry.key)
    spec = spec_for(entry, weights)
    if weights:
        problem = fits_message(spec, int(weights.get("bytes") or 0))
        if problem:
            raise ValueError(problem)
    tags = cloud.app_tags(spec.app_name)
    current = not redeploy and tags is not None and tags.get("goat-spec") == spec.digest
    url = cloud.web_url(spec.app_name) if current else None
    deploy_s = None
    if url is None:
        why = (
            "forced"
            if redeploy
            else "not deployed"
            if tags is None
            else "models.yaml changed"
            if tags.get("goat-spec") != spec.digest
            else "stopped"
        )
        log.info(f"{entry.key}: deploying {spec.app_name} to Modal environment {cloud.environment} ({why})")
        app, _ = build_app_for(spec)
        t0 = time.monotonic()
        cloud.deploy(app)
        deploy_s = round(time.monotonic() - t0, 1)
        url = cloud.web_url(spec.app_name)
        if url is None:
            raise RuntimeError(f"{spec.app_name} was deployed but Modal has no URL for its serve function")
    else:
        log.info(f"{entry.key}: {spec.app_name} is deployed and current (spec {spec.digest[:12]})")
    log.info(f"{entry.key}: {url} — waiting up to {spec.startup_timeout_s}s for /health (cold start)")
    probe = probe_endpoint(
        url, spec.served_model, timeout_s=spec.startup_timeout_s + 60, api_key=api_key, log=log
    )
    detail = {
        "environment": cloud.environment,
        "url": url,
        "gpu": spec.gpu_request,
        "usd_per_hour": round(spec.n_gpu * entry.pricing.gpu_hour_usd, 2),
        "revision": spec.revision,
        "spec_digest": spec.digest,
        "deployed_now": deploy_s is not None,
        "deploy_s": deploy_s,
        "scaledown_window_s": spec.scaledown_window_s,
        "max_inputs": spec.max_inputs,
        "health_attempts": probe.attempts,
        # /health answered at the first try: the app was up already, so no cold start was measured
        "warm": probe.attempts == 1 and probe.healthy,
        "first_answer_s": probe.first_answer_s,
        "models": probe.models,
        "auth": f"bearer token from ${VLLM_KEY_ENV} (Modal secret {SECRET_VLLM}) on /v1; /health is open",
    }
    if probe.error:
        detail["error"] = probe.error
        log.error(f"{entry.key}: {probe.error}")
    ep = Endpoint(
        model_key=entry.key,
        provider="modal",
        engine=entry.engine,
        base_url=f"{url.rstrip('/')}/v1",
        served_name=spec.served_model,
        healthy=probe.healthy,
        cold_start_s=None if detail["warm"] else probe.first_answer_s,
        load_s=probe.health_s,
        app_name=spec.app_name,
        detail=detail,
    )
    save_endpoint(ep)
    if probe.healthy:
        log.info(f"{entry.key}: healthy after {probe.health_s}s, first answer after {probe.first_answer_s}s")
    return ep


def stop_modal_endpoint(entry: ModelEntry, log: LogLike, *, cloud: ModalCloud | None = None) -> bool:
    """Stop (undeploy) the model's app: containers end, the URL stops answering, GPU billing stops.
    The saved endpoint is marked unhealthy. Returns False if no such app was deployed."""
    cloud = cloud or ModalCloud()
    spec = spec_for(entry, load_weights_record(entry.key))
    stopped = cloud.stop(spec.app_name)
    log.info(
        f"{entry.key}: {spec.app_name} {'stopped' if stopped else 'was not deployed'} ({cloud.environment})"
    )
    ep = load_endpoint(entry.key)
    if ep is not None and ep.provider == "modal":
        ep.healthy = False
        ep.checked_at = datetime.now(UTC)
        ep.detail = {**ep.detail, "stopped_at": ep.checked_at.isoformat()}
        save_endpoint(ep)
    return stopped


# ---- the proxy ----------------------------------------------------------------------------------


def services_record_path() -> Path:
    return config.paths().home / "modal" / "services.json"


def ensure_modal_services(
    litellm_config: dict[str, Any] | str | Path | None, log: LogLike, *, cloud: ModalCloud | None = None
) -> str:
    """Deploy (or find, if current) `goat-services` from a LiteLLM config; return the proxy URL.

    `litellm_config`: the dict `build_litellm_config(registry, endpoints)` returns, a file, or None
    to build it. Point GOAT_LITELLM_URL (the proxy resource's external mode) at the result.
    """
    from goat_dagster.routing import modal_proxy as modal_services

    cloud = cloud or ModalCloud()
    spec, dropped = modal_services.services_spec(litellm_config)
    if dropped:
        log.warning(f"not served on Modal (they point at this machine): {', '.join(dropped)}")
    tags = cloud.app_tags(modal_services.APP_NAME)
    if tags is None or tags.get("goat-spec") != spec.digest:
        log.info(f"deploying {modal_services.APP_NAME} to Modal environment {cloud.environment}")
        app, _ = modal_services.build_services_app(spec)
        cloud.deploy(app)
    url = cloud.web_url(modal_services.APP_NAME, modal_services.PROXY_FUNCTION)
    if url is None:
        raise RuntimeError(f"{modal_services.APP_NAME} is not deployed in {cloud.environment}")
    record = {
        "app_name": modal_services.APP_NAME,
        "url": url,
        "environment": cloud.environment,
        "spec_digest": spec.digest,
        "models": [m.get("model_name") for m in spec.config.get("model_list", [])],
        "dropped": dropped,
        "checked_at": datetime.now(UTC).isoformat(),
    }
    p = services_record_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(record, indent=2))
    log.info(f"LiteLLM proxy on Modal: {url} (set GOAT_LITELLM_URL={url} to route through it)")
    return url
