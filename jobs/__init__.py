"""RQ entry points: thin functions (ids in, one service call, exceptions propagate)."""
