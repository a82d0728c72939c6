"""Routing: the LiteLLM proxy, the one door to every model. Its config (derived once from the
registry and the endpoint records), the managed proxy process, scoped keys, the `Gateway` a caller
uses, the proxy on Modal, and what `goat run` brings up for a model (`stack`)."""
