"""Cloud provisioning: `goat setup` (Modal environment, secrets, volumes from ./.env)."""
