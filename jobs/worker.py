"""The RQ worker Railyard runs: RQ's SimpleWorker (jobs in this process, inside the app
context, so the engine batches runs per job), each job on a database session of its own, as
each web request has one.

Without that, a job that ended on a read (the outbox's "anything to send?") left its
transaction open for the next job. On SQLite a transaction reads one snapshot, so the next job
missed what other processes had committed since: a drain job woke a second before its runs fell
due, saw none of the runs just added, and ended, leaving them to the sweeper.
"""

from typing import Any

from rq import SimpleWorker

from webapp.extensions import db


class JobWorker(SimpleWorker):
    def perform_job(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().perform_job(*args, **kwargs)
        finally:
            db.session.remove()
