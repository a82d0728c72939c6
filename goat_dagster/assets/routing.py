"""`litellm_config`: the LiteLLM proxy config generated from the registry and the endpoints, validated,
written and applied to the proxy (restarted only when its content changed)."""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue, asset

from goat_dagster.assets.common import OWNERS, markdown_table
from goat_dagster.registry import load_registry
from goat_dagster.resources.litellm import LiteLLMProxyResource
from goat_dagster.routing import proxy
from goat_dagster.routing.config import (
    config_yaml,
    langfuse_configured,
    plan_litellm_config,
    validate_with_litellm,
    write_litellm_config,
)
from goat_dagster.serving.endpoint import load_endpoints


@asset(
    key="litellm_config",
    group_name="routing",
    kinds={"litellm", "yaml"},
    owners=OWNERS,
    code_version="1",
    deps=[AssetKey("serving_endpoint"), AssetKey("model_registry")],
    description=(
        "The LiteLLM proxy config (config.yaml) generated from models.yaml and the serving endpoints: "
        "`<key>-local` deployments, cloud models with os.environ/ key references, router settings, "
        "trace callbacks. Applied to the proxy; restarts it only when the content changed."
    ),
)
def litellm_config(context: AssetExecutionContext, litellm: LiteLLMProxyResource) -> MaterializeResult:
    registry = load_registry()
    built = plan_litellm_config(registry, load_endpoints())
    path = proxy.config_path()
    text = config_yaml(built.config)
    changed = not path.exists() or path.read_text() != text
    if changed:  # LiteLLM's own validation, before a proxy ever sees it
        with tempfile.TemporaryDirectory() as tmp:
            candidate = Path(tmp) / "config.yaml"
            candidate.write_text(text)
            validate_with_litellm(candidate)
    write_litellm_config(built.config, path)
    applied = litellm.apply(built.config, log=context.log.info)
    if applied.get("ready") is False:  # external: its config is deployed with it, so this one waits
        context.log.warning(
            f"the external proxy at {applied['base_url']} is not ready; this config ({path}) reaches it "
            "only when deployed with it (modal deploy -m goat_dagster.routing.modal_proxy)"
        )
    context.log.info(
        f"{len(built.routed)} model names ({len(built.config['model_list'])} deployments), "
        f"{len(built.skipped)} skipped; proxy {applied['action']} "
        f"at {applied['base_url']}"
    )
    return MaterializeResult(
        data_version=DataVersion(built.sha256),
        metadata={
            "config_path": MetadataValue.path(str(path)),
            "config_sha256": built.sha256,
            "changed": changed,
            "proxy_mode": applied["mode"],
            "proxy_action": applied["action"],
            "proxy_url": MetadataValue.url(applied["base_url"]),
            "n_models": len(built.routed),
            "n_deployments": len(built.config["model_list"]),
            "n_skipped": len(built.skipped),
            "routing_strategy": registry.router.routing_strategy,
            "langfuse": langfuse_configured(),
            "deployments": MetadataValue.md(
                markdown_table(
                    built.routed, ["model_name", "provider", "litellm_model", "api_base", "defaults"]
                )
            ),
            "skipped": MetadataValue.md(markdown_table(built.skipped, ["model", "reason"])),
        },
    )
