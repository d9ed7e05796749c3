"""Stage completion emails leave from the outbox after commit, at least once, never twice."""

import socketserver
import threading

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Notification, OutboxMessage
from webapp.services.actors import Actor
from webapp.services.governance import notifications
from webapp.services.runs import controls, sweep


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib.send_message: records each message's recipients."""

    def handle(self):
        self.wfile.write(b"220 test ESMTP\r\n")
        recipients = []
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                self.wfile.write(b"250 test\r\n")
            elif command.startswith("RCPT"):
                recipients.append(line.decode().split(":", 1)[1].strip(" <>\r\n"))
                self.wfile.write(b"250 ok\r\n")
            elif command == "DATA":
                self.wfile.write(b"354 go on\r\n")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.server.received.append(list(recipients))
                recipients.clear()
                self.wfile.write(b"250 queued\r\n")
            elif command == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_config(app_config, smtp):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp.server_address[1]}


def test_stage_completion_emails_adder_and_creator_once(clock, make, project, editor, two_stage,
                                                        smtp):
    adder = make.user(project=project, role="editor", email="adder@example.com")
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(adder))
    sweep.advance(bell.run_id, bell.version)
    sweep.advance(bell.run_id, bell.version)  # delivered twice: still one row per person
    db.session.rollback()
    rows = db.session.scalars(select(OutboxMessage)).all()
    assert sorted(r.payload["to"] for r in rows) == ["adder@example.com", "editor@example.com"]
    assert len(db.session.scalars(select(Notification)).all()) == 2

    assert notifications.deliver_outbox() == 2
    assert notifications.deliver_outbox() == 0
    assert sorted(r[0] for r in smtp.received) == ["adder@example.com", "editor@example.com"]
    db.session.rollback()
    assert all(r.sent_at is not None for r in db.session.scalars(select(OutboxMessage)))


def test_an_unreachable_mail_server_keeps_the_message_for_later(clock, app, make, project, editor,
                                                                two_stage, smtp):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    app.config["MAIL_PORT"] = 1  # nothing listens there
    assert notifications.deliver_outbox() == 0
    db.session.rollback()
    [row] = db.session.scalars(select(OutboxMessage)).all()
    assert row.sent_at is None and row.attempts == 1 and row.last_error
    app.config["MAIL_PORT"] = smtp.server_address[1]
    assert notifications.deliver_outbox() == 1
    assert smtp.received == [["editor@example.com"]]
