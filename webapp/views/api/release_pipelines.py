"""Admin API: release_pipelines (being written)."""
