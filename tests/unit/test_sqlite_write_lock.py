"""On SQLite, a request that changes something takes the write lock when its transaction
begins (so busy_timeout queues it behind other writers); a read-only request does not."""

import sqlite3

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import User


def _other_writer_can_start(path: str) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return False
    finally:
        other.close()


pytestmark = pytest.mark.sqlite_only


@pytest.mark.parametrize(("method", "holds_lock"), [
    ("POST", True), ("PATCH", True), ("DELETE", True), ("GET", False), ("HEAD", False),
])
def test_request_transactions_and_the_write_lock(app, method, holds_lock):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.test_request_context("/", method=method):
        db.session.execute(select(User.id).limit(1))  # the first read begins the transaction
        assert _other_writer_can_start(url.removeprefix("sqlite:///")) is not holds_lock
        db.session.rollback()
