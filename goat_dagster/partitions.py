"""The `models` dynamic partitions: one partition per (slugified) key of models.yaml."""

from dagster import DynamicPartitionsDefinition

MODELS_PARTITIONS_NAME = "models"
models_partitions = DynamicPartitionsDefinition(name=MODELS_PARTITIONS_NAME)
