"""Entry point of a worker process (`python -m goat_dagster.serving.local.worker_main`), started by the
control plane (`worker.Worker.spawn`); not meant to be run by hand.

Dies with its parent (PR_SET_PDEATHSIG), loads the model through llama-cpp-python's own server
app, reports readiness on the pipe it was given and serves on the socket it was given.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when the control plane dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            print(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="goat-worker")
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    parser.add_argument("--ready-fd", type=int, required=True, help="pipe to report readiness on")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--spec", required=True, help="WorkerSpec as JSON")
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)

    # imported only now, after PR_SET_PDEATHSIG: loading llama.cpp takes a while, and a worker
    # whose control plane died meanwhile must not linger
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ServerSettings

    from goat_dagster.config import settings
    from goat_dagster.serving.local import llama_patches  # imports llama_cpp
    from goat_dagster.serving.local.engine import READY_LINE, WorkerSpec, isolated_model_settings
    from goat_dagster.serving.local.stream_usage import IncludeUsage

    llama_patches.install(draft_tokens=settings().serve_draft_tokens)

    spec = WorkerSpec.model_validate_json(args.spec)
    model_settings = isolated_model_settings()(**spec.model_settings_kwargs())
    # one request at a time comes from the control plane's per-model queue; never let a new
    # request cut a running stream short
    # (model_construct: defaults, nothing read from the environment)
    server_settings = ServerSettings.model_construct(interrupt_requests=False)
    app = create_app(server_settings=server_settings, model_settings=[model_settings])
    app.add_middleware(IncludeUsage)  # streams end with usage when the request asked for it
    sock = socket.socket(fileno=args.fd)
    os.write(args.ready_fd, READY_LINE)
    os.close(args.ready_fd)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
