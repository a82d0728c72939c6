"""Software-defined assets, one module per stage (DESIGN §2)."""
