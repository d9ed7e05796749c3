"""gunicorn settings for `run-all` (`-c python:webapp.gunicorn_conf`): metrics of exited workers."""

from webapp.metrics import child_exit  # noqa: F401  (gunicorn reads the hook by name)
