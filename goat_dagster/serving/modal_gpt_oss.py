"""`GOAT_MODEL=<key> modal deploy -m goat_dagster.serving.modal_gpt_oss` (DESIGN §4): the gpt-oss app.

The app is built in `goat_dagster/serving/modal/gpt_oss_app.py`; this module is the name DESIGN and the
README give it, and hands every attribute (`app`, `serve`, the helpful error when GOAT_MODEL is
unset) on from there. In the container Modal imports `serving.modal.gpt_oss_app` itself.
"""

from __future__ import annotations

from typing import Any

import goat_dagster.serving.modal.gpt_oss_app as _app


def __getattr__(name: str) -> Any:
    return getattr(_app, name)
