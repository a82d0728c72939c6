"""What every asset module shares: the owners."""

OWNERS = ["team:goat-bench"]
