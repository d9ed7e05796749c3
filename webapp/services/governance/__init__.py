"""Audit, notifications and webhooks: what every other service records or sends. Depends on no
other service package."""
