"""Filters: each keeps a row or drops it with a reason."""
