"""`goat doctor`: phased checks of the whole path, each with a pass/fail and the fix to try.

The phases follow seed 000's `test_modal_infra.sh`:

1. config    models.yaml valid, weights pinned, .env present, Modal credentials present
   engine    the CPU features the installed llama.cpp engine was built with against /proc/cpuinfo,
             and one short real generation of the first enabled local model with its own
             n_threads (in a subprocess: an engine that traps says so instead of killing doctor)
2. secrets   Modal reachable; environment, the five secrets and the volumes exist
3. services  `goat-services` and the enabled Modal models' `goat-vllm-<key>` apps deployed
             (and `goat-langfuse` with GOAT_LANGFUSE_ON_MODAL); a configured Langfuse's health
4. endpoints every recorded endpoint of an enabled model answers its backend's probe
5. proxy     one chat call through the LiteLLM proxy (GOAT_LITELLM_URL, LITELLM_MASTER_KEY)
6. traces    that call's trace is in the local trace sink (matched by its `goat_call_id`)

Modal being unreachable (or not logged in) fails phases 2-3 with that reason instead of a
traceback; the local phases still run. Phases 5 and 6 are small functions (`check_proxy_call`,
`find_trace`) so tests can point them at a proxy and a sink of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goat_dagster import config
from goat_dagster.doctor.call_checks import (
    check_endpoints,
    check_proxy_call,
    check_trace,
    doctor_run_id,
    find_trace,
    pick_model,
    proxy_target,
)
from goat_dagster.doctor.check import PHASES, Check, render, to_json
from goat_dagster.doctor.modal_checks import check_langfuse, check_modal, modal_in_use
from goat_dagster.doctor.setup_checks import check_config, check_engine
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.modal.cloud import ModalCloud
from goat_dagster.tracing.schema import new_id

__all__ = [
    "PHASES",
    "Check",
    "check_config",
    "check_endpoints",
    "check_engine",
    "check_langfuse",
    "check_modal",
    "check_proxy_call",
    "check_trace",
    "doctor_run_id",
    "find_trace",
    "modal_in_use",
    "pick_model",
    "proxy_target",
    "render",
    "run_doctor",
    "to_json",
]


def run_doctor(
    cloud: Any = None,
    env_file: str | Path = ".env",
    trace_wait_s: float | None = None,
    check_cloud: bool | None = None,
) -> list[Check]:
    """All phases. Modal's (credentials, secrets, services) run when Modal is in use or
    `check_cloud` is True; a machine that only benchmarks local models skips them, saying why."""
    cloud = cloud or ModalCloud()
    checks, registry = check_config(cloud, Path(env_file))
    checks += check_engine(registry)
    reason = modal_in_use(cloud, registry)
    if check_cloud or (check_cloud is None and reason):
        checks += check_modal(cloud, registry)
    else:
        why = "no enabled model runs on Modal, no Modal credentials set (`goat doctor --cloud` checks anyway)"
        checks = [c for c in checks if c.name != "Modal credentials"]
        checks += [Check(phase, "Modal", "skip", why) for phase in ("secrets", "services")]
    checks += check_langfuse()
    checks += check_endpoints(registry, Backends.from_settings())
    model = pick_model(registry)
    if model is None:
        checks.append(Check("proxy", "model", "skip", "no enabled model in models.yaml", "enable one"))
        checks.append(Check("traces", "trace", "skip", "no call made"))
        return checks
    call_id, trace_id = new_id(), new_id()
    proxy = check_proxy_call(model, call_id, trace_id)
    checks.append(proxy)
    if proxy.status != "pass":
        checks.append(
            Check("traces", "trace", "skip", "no call went through the proxy", "fix the proxy phase first")
        )
    else:
        wait = trace_wait_s if trace_wait_s is not None else config.settings().doctor_trace_wait_s
        checks.append(check_trace(call_id, doctor_run_id(trace_id), wait))
    return checks
