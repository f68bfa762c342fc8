"""Types every stage shares: fragment sets, Arrow schemas, error kinds, union-find."""
