"""The local control plane, `goat serve`: llama.cpp workers behind one OpenAI-compatible front, on
this machine's CPU. `backend.LocalBackend` is what the rest of goat calls."""
