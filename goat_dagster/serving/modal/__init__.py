"""Modal: the vLLM apps (`*_app.py`, shipped into Modal's containers), what they are built from
(`spec.py`, stdlib only), the edge to Modal's API (`cloud.py`), deploying and recording
(`deploy.py`), and `goat setup` (`setup.py`). `backend.ModalBackend` is what the rest of goat calls."""
