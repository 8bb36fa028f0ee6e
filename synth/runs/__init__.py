"""Run folders and the one path to a model: the folder (lock, files), the response cache and spend ledger, prices, the session, the dry-run plan."""
