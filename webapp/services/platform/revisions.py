"""Which environment an SDK key opens, and at which revision, without a query per request.

Every change an SDK could see bumps `environment.revision` in the change's own transaction
(`flag_changes.bump_revision`); the SDK API answers from documents cached per revision. Reading
the key's row costs a round trip to PostgreSQL on every request, so on PostgreSQL each process
keeps the key → (environment, revision) answers it has read, and forgets them all when
PostgreSQL says a revision moved:

- `bump_revision` also runs `pg_notify(CHANNEL)` in the same transaction: PostgreSQL delivers it
  when (and only if) the transaction commits.
- A listener thread per process and database holds one connection that LISTENs on CHANNEL and
  clears the cache on every notification. While it is not listening (starting, reconnecting
  after PostgreSQL restarted or the connection broke) nothing is served from the cache: every
  request reads the row, as it would without a cache.
- A commit in this process that bumped a revision clears the cache at once (after_commit), so
  a request that follows a change in the same process never waits for the notification.

Staleness bound: another process's change is visible here once the notification has been
received, a fraction of a millisecond after the commit on an idle machine and a few
milliseconds (the GIL's switch interval) under load. An SDK request that reads the row may
equally have started before the commit, so this adds no staleness beyond that window of
in-flight requests. The listener pings PostgreSQL every LIVENESS_SECONDS and its connection
has a TCP user timeout of TCP_TIMEOUT_MS, so a connection that silently died (a network
partition) stops the cache within ~3 s; Flagsmith with its caches on serves flags up to the
cache's TTL old (60 s by default for its environment cache).

SQLite (one machine, no NOTIFY): each process keeps an answer for at most SQLITE_KEY_SECONDS
after it began reading it (RecentKeyCache), and forgets them all at a commit of its own that
bumped a revision, as above. So another process's change (a rotated key included) is served
here at most that long after its commit. Why not a read per request: the read is a few µs
alone, but under load the web workers' reads of one file contend for SQLite's shared-memory
locks, and it was a third of what a flags read cost beyond the bare server (bench/sdk.py: 67 %
of the bare app's rate, against 86 % on PostgreSQL with its cache).
"""

import os
import threading
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

CHANNEL = "railyard_revision"
# How often the listener proves its connection alive when no notification came.
LIVENESS_SECONDS = 1.0
# libpq's TCP_USER_TIMEOUT: unacknowledged data for this long breaks the connection.
TCP_TIMEOUT_MS = 2000
# How long the listener waits before reconnecting after a failure.
RECONNECT_SECONDS = 0.5
# The listener's connection, as pg_stat_activity shows it.
LISTENER_NAME = "railyard-revision-listener"
# SQLite: how long an answer is served before its row is read again (the staleness bound).
SQLITE_KEY_SECONDS = 0.05
_BUMPED = "railyard_revision_bumped"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


def notify_bumped(session: Session) -> None:
    """Call in the transaction that bumped a revision: other processes hear of it at commit,
    this process as soon as its commit returns."""
    session.info[_BUMPED] = True
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY)


class _KeyAnswers:
    """Key → row answers, all forgotten by invalidate(); a subclass says which are usable."""

    listening = True  # answers are served and kept only while this holds

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, float]] = {}  # key: (answer, when its read began)
        self._lock = threading.Lock()
        self._generation = 0

    def _usable(self, read_at: float, moment: float) -> bool:
        return True

    def get(self, key: str, read):
        """The kept answer for key, else `read(key)` (kept unless a change came meanwhile)."""
        moment = time.monotonic()
        found = self._entries.get(key)
        if found is not None and self.listening and self._usable(found[1], moment):
            return found[0]
        generation = self._generation
        answer = read(key)
        if answer is not None:
            with self._lock:
                if self._generation == generation and self.listening:
                    self._entries[key] = (answer, moment)
        return answer

    def peek(self, key: str) -> Any:
        """The kept answer for key, or None."""
        found = self._entries.get(key)
        if found is None or not self.listening or not self._usable(found[1], time.monotonic()):
            return None
        return found[0]

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


class KeyCache(_KeyAnswers):
    """PostgreSQL's answers for one database, valid while the listener listens."""

    def __init__(self, engine: Engine):
        super().__init__()
        # Connection keywords, not a rendered URL: query options such as
        # `options=-c synchronous_commit=off` or `sslmode` reach libpq as they are.
        url = engine.url
        # As text: make_conninfo writes every value with str() anyway.
        self._dsn = make_conninfo("", **{key: str(value) for key, value in {
            "host": url.host, "port": url.port, "dbname": url.database, "user": url.username,
            "password": url.password, **dict(url.query)}.items() if value is not None})
        self.listening = False
        self._thread = threading.Thread(target=self._listen, daemon=True,
                                        name="railyard-revision-listener")
        self._thread.start()

    def _listen(self) -> None:
        while True:
            try:
                with psycopg.connect(self._dsn, autocommit=True, keepalives=1,
                                     keepalives_idle=5, keepalives_interval=1,
                                     keepalives_count=3, tcp_user_timeout=TCP_TIMEOUT_MS,
                                     connect_timeout=5,
                                     application_name=LISTENER_NAME) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.invalidate()
                    self.listening = True
                    while True:
                        for _notice in connection.notifies(timeout=LIVENESS_SECONDS):
                            self.invalidate()
                        connection.execute("SELECT 1")
            except Exception:  # noqa: BLE001 (any failure: stop serving from the cache)
                pass
            self.listening = False
            self.invalidate()
            time.sleep(RECONNECT_SECONDS)


class RecentKeyCache(_KeyAnswers):
    """SQLite's answers, each served for SQLITE_KEY_SECONDS after its read began."""

    def _usable(self, read_at: float, moment: float) -> bool:
        return moment - read_at < SQLITE_KEY_SECONDS


_caches: dict[tuple[int, Any], KeyCache | RecentKeyCache] = {}
_caches_lock = threading.Lock()


def key_cache(engine: Engine) -> KeyCache | RecentKeyCache | None:
    """This process's cache for the engine's database, started on first use; None for an
    in-memory SQLite database (no other process can change it; each test makes its own)."""
    postgresql = engine.dialect.name == "postgresql"
    if not postgresql and engine.url.database in (None, "", ":memory:"):
        return None
    # Per process (a forked web worker starts its own listener) and database (engines come and
    # go with apps; the URL stays).
    index = (os.getpid(), engine.url)
    cache = _caches.get(index)
    if cache is None:
        with _caches_lock:
            cache = _caches.get(index)
            if cache is None:
                cache = _caches[index] = KeyCache(engine) if postgresql else RecentKeyCache()
    return cache


def invalidate_all() -> None:
    for cache in list(_caches.values()):
        cache.invalidate()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_BUMPED, False):
        invalidate_all()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_BUMPED, None)
