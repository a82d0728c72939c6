"""LLM call traces: the metadata every call carries, the local sink, Langfuse read-back, export."""
