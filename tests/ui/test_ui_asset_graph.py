"""The real Dagster webserver shows goat's asset graph in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from goat_dagster.definitions import defs

from .conftest import dismiss_community_dialog

pytestmark = [pytest.mark.ui, pytest.mark.integration]


def test_asset_graph_lists_every_asset(dagster_ui: str, browser, tmp_path: Path) -> None:
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.materializable_asset_keys)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{dagster_ui}/assets", wait_until="domcontentloaded")
    dismiss_community_dialog(page)
    for key in keys:
        page.get_by_text(key, exact=True).first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "assets.png"), full_page=True)

    # the lineage graph, one group at a time (the global view collapses groups)
    groups: dict[str, list[str]] = {}
    for key in graph.materializable_asset_keys:
        groups.setdefault(graph.get(key).group_name, []).append(key.to_user_string())
    for group, members in sorted(groups.items()):
        page.goto(f"{dagster_ui}/locations/goat_dagster/asset-groups/{group}", wait_until="domcontentloaded")
        dismiss_community_dialog(page)
        try:
            for key in members:
                page.get_by_text(key, exact=True).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(tmp_path / f"lineage-{group}.png"), full_page=True)
        assert (tmp_path / f"lineage-{group}.png").stat().st_size > 10_000
    page.close()


def test_sensor_is_loaded_and_running(dagster_ui: str, browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{dagster_ui}/automation", wait_until="domcontentloaded")
    dismiss_community_dialog(page)
    page.get_by_text("model_registry_sensor").first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "automation.png"), full_page=True)
    page.close()


def test_second_ui_session_shares_the_daemon(dagster_ui: str, tmp_path: Path) -> None:
    """A second `goat ui` on the same GOAT_HOME serves the UI without starting a second daemon."""
    from .conftest import free_port, start_ui, stop, wait_http

    port = free_port()
    log = tmp_path / "second-ui.log"
    proc = start_ui(port, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/server_info", proc)
        assert "webserver only" in log.read_text()
    finally:
        stop(proc)
