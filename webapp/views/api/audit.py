"""Admin API: audit (being written)."""
