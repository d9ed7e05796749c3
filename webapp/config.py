"""Configuration from the environment, with defaults that give a working embedded set-up."""

import os
import secrets
from pathlib import Path


def _secret_key(instance_path: Path) -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _database_url(instance_path: Path) -> str:
    url = os.environ.get("DATABASE_URL", f"sqlite:///{instance_path / 'railyard.db'}")
    # Hosted PostgreSQL URLs often say postgres:// or postgresql://; we drive psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def from_environment(instance_path: Path) -> dict:
    instance_path.mkdir(parents=True, exist_ok=True)
    return {
        "SECRET_KEY": _secret_key(instance_path),
        "SQLALCHEMY_DATABASE_URI": _database_url(instance_path),
        # Empty means "start an embedded redis-server" (see webapp/redis_conn.py).
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "SWEEP_INTERVAL_SECONDS": float(os.environ.get("SWEEP_INTERVAL_SECONDS", "2")),
        # How often an open page checks for changes while nothing moves by itself (issue 13).
        "LIVE_IDLE_SECONDS": float(os.environ.get("LIVE_IDLE_SECONDS", "10")),
        "MAIL_SERVER": os.environ.get("MAIL_SERVER", ""),
        "MAIL_PORT": int(os.environ.get("MAIL_PORT", "25")),
        "MAIL_SENDER": os.environ.get("MAIL_SENDER", "railyard@localhost"),
        # Absolute links in webhook and Slack messages (else the host of the changing request).
        "BASE_URL": os.environ.get("BASE_URL", ""),
        # Let webhooks call private, loopback and link-local addresses (closed networks, tests).
        "WEBHOOKS_ALLOW_PRIVATE": os.environ.get("WEBHOOKS_ALLOW_PRIVATE", "").lower()
        in ("1", "true", "yes"),
        "WEBHOOK_TIMEOUT_SECONDS": float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10")),
        "WEBHOOK_RETRY_SECONDS": float(os.environ.get("WEBHOOK_RETRY_SECONDS", str(6 * 3600))),
        # Origins whose pages may call the admin API (comma-separated); the SDK API answers any.
        "CORS_ADMIN_ORIGINS": os.environ.get("CORS_ADMIN_ORIGINS", ""),
        # /metrics: a bearer token when set; otherwise loopback callers only.
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", ""),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        # werkzeug's method and cost for password hashes: scrypt, n=2**15 (~0.1 s of CPU each).
        # Only the tests lower it (a few ms), where thousands of users are made and signed in.
        "PASSWORD_HASH_METHOD": "scrypt:32768:8:1",
        # Failed sign-ins allowed per window before every attempt is refused until it ends
        # (webapp/throttle.py): per account, and per client address (offices share one).
        "THROTTLE_SIGN_IN_PER_ACCOUNT": int(os.environ.get("THROTTLE_SIGN_IN_PER_ACCOUNT", "10")),
        "THROTTLE_SIGN_IN_PER_ADDRESS": int(os.environ.get("THROTTLE_SIGN_IN_PER_ADDRESS", "50")),
        "THROTTLE_SIGN_IN_WINDOW": int(os.environ.get("THROTTLE_SIGN_IN_WINDOW", "900")),
        # Failed API key / token authentications allowed per client address and window.
        "THROTTLE_API_AUTH_PER_ADDRESS": int(os.environ.get("THROTTLE_API_AUTH_PER_ADDRESS",
                                                            "30")),
        "THROTTLE_API_AUTH_WINDOW": int(os.environ.get("THROTTLE_API_AUTH_WINDOW", "300")),
        # Proxies in front that set X-Forwarded-* (0: none; the request is taken as it comes).
        "PROXY_FIX_HOPS": int(os.environ.get("PROXY_FIX_HOPS", "0")),
    }
