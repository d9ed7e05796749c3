from tests.engine.conftest import clock, envs, make_pipeline, two_stage  # noqa: F401
