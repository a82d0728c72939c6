"""`litellm_config`: the LiteLLM proxy config built from the registry and the endpoint records
(`routing.config.build_config`, the one place it is derived), written, checked by LiteLLM and served
by the proxy (`LiteLLMProxyResource.ensure`: restarted only when its content changed)."""

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue, asset

from goat_dagster import config
from goat_dagster.assets.common import OWNERS
from goat_dagster.resources.litellm import LiteLLMProxyResource
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.routing.config import build_config
from goat_dagster.serving.endpoint import load_endpoints
from goat_dagster.textfmt import markdown_table


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
def litellm_config(
    context: AssetExecutionContext, litellm: LiteLLMProxyResource, registry: RegistryResource
) -> MaterializeResult:
    models = registry.registry()
    built = build_config(models, load_endpoints())
    proxy = litellm.ensure(built, context.log)
    if not proxy.ready:  # external: its config is deployed with it, so this one waits
        context.log.warning(
            f"the external proxy at {proxy.base_url} is not ready; this config ({proxy.config_path}) "
            "reaches it only when deployed with it (modal deploy -m goat_dagster.routing.modal_proxy)"
        )
    context.log.info(
        f"{len(built.routed)} model names ({len(built.config['model_list'])} deployments), "
        f"{len(built.skipped)} skipped; proxy {proxy.action} at {proxy.base_url}"
    )
    return MaterializeResult(
        data_version=DataVersion(built.sha256),
        metadata={
            "config_path": MetadataValue.path(str(proxy.config_path)),
            "config_sha256": built.sha256,
            "changed": proxy.config_changed,
            "proxy_mode": proxy.mode,
            "proxy_action": proxy.action,
            "proxy_url": MetadataValue.url(proxy.base_url),
            "n_models": len(built.routed),
            "n_deployments": len(built.config["model_list"]),
            "n_skipped": len(built.skipped),
            "routing_strategy": models.router.routing_strategy,
            "langfuse": config.settings().langfuse_configured,
            "deployments": MetadataValue.md(
                markdown_table(
                    built.routed, ["model_name", "provider", "litellm_model", "api_base", "defaults"]
                )
            ),
            "skipped": MetadataValue.md(markdown_table(built.skipped, ["model", "reason"])),
        },
    )
