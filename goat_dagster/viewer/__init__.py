"""`goat view`: the results and transcript viewer (a read-only web app over $GOAT_HOME)."""
