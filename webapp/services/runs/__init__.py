"""Flags moving through pipelines: the engine (planning, one transition, sweeps), the controls
people use on a run, gates (health checks while watching), alerts, and the approval gate."""
