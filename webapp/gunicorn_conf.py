"""gunicorn settings for `run-all` (`-c python:webapp.gunicorn_conf`): metrics of exited workers,
and workers that keep the loaded app out of the cyclic GC."""

import gc

from webapp.metrics import child_exit  # noqa: F401  (gunicorn reads the hook by name)


def post_worker_init(_worker) -> None:
    """gunicorn hook, once the worker has loaded the app: what the app made (~150,000 objects)
    leaves the cyclic GC, whose full collections walked them all in the middle of a request
    (tens of milliseconds; the requests make little that lives long)."""
    gc.freeze()
