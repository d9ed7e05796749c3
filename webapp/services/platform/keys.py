"""Secret keys: environment keys and API keys (stored hashed, shown once)."""

import hashlib
import secrets


def environment_client_key() -> str:
    return secrets.token_urlsafe(16)


def environment_server_key() -> str:
    return "ser." + secrets.token_urlsafe(20)


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
