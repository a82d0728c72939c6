"""Sensors: the model registry sensor and the benchmark suite sensor."""
