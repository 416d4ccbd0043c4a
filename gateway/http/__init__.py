"""HTTP handlers by resource: thin views over the core."""
