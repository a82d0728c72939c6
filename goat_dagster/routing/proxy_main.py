"""The managed LiteLLM proxy's process when started ahead of its config (`proxy.prewarm`).

It imports what `litellm --config` imports before it can serve — LiteLLM's proxy server, goat's
trace sink and key check that the config names — then waits on the pipe whose file descriptor is
its argument. One line comes: `{"args": [...]}`, the arguments `litellm` would have been given
(`--config`, `--host`, `--port`), and it runs LiteLLM's own command line with them: from then on it
is the proxy `ensure_proxy` started, exactly as a fresh `litellm` process (the same environment, set
when it was spawned, and directory). The end of the pipe instead (nothing needed a proxy, or the
process that started it is gone) and it exits.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import litellm.proxy.proxy_server  # noqa: F401  (the ~6-9 s this process is here to spend early)
from litellm.proxy.proxy_cli import run_server

from goat_dagster.routing.config import CUSTOM_AUTH, SINK_CALLBACK

for _hook in (SINK_CALLBACK, CUSTOM_AUTH):  # the modules of the hooks the config names
    importlib.import_module(_hook.rpartition(".")[0])


def main(argv: list[str]) -> int:
    with os.fdopen(int(argv[0])) as pipe:
        line = pipe.readline()
    if not line:
        return 0
    args = [str(a) for a in json.loads(line)["args"]]
    print(f"starting litellm: {' '.join(args)}", flush=True)
    sys.argv = ["litellm", *args]
    run_server.main(args=args, prog_name="litellm")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
