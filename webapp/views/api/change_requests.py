"""Admin API: change_requests (being written)."""
