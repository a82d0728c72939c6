"""Serving: the local llama.cpp control plane, Modal vLLM apps, the LiteLLM config builder."""
