"""Sensors: the model registry sensor, the benchmark suite sensor and the agent prompts sensor."""
