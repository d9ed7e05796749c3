"""The whole test suite: the lint first, then SQLite, then PostgreSQL when a server answers.

The lint is `ruff check` over the code and the tests, with the ruff installed next to this
Python; any finding stops the run before a test starts.

PostgreSQL is taken from DATABASE_URL when it names one, else 127.0.0.1:5432 (user postgres);
the tests create and drop a database of their own there. Without a server the PostgreSQL pass
is skipped with the reason printed. Extra arguments go to pytest.
"""

import os
import subprocess
import sys

import psycopg

LINTED = ["webapp", "jobs", "tests", "bench"]


def _postgres_server() -> tuple[str | None, str]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql")):
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
    plain = url.replace("postgresql+psycopg://", "postgresql://").replace("postgres://", "postgresql://")
    try:
        psycopg.connect(plain, connect_timeout=3).close()
    except psycopg.Error as error:
        return None, f"{plain.split('@')[-1]}: {str(error).strip().splitlines()[0]}"
    return plain.replace("postgresql://", "postgresql+psycopg://"), ""


def _lint() -> int:
    print("=== ruff check ===", flush=True)
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    return subprocess.call([ruff, "check", *LINTED])


def _pytest(label: str, extra_env: dict[str, str], args: list[str]) -> int:
    print(f"\n=== {label} ===", flush=True)
    env = {**os.environ, **extra_env}
    env.pop("DATABASE_URL", None)  # the tests build their own databases
    return subprocess.call([sys.executable, "-m", "pytest", *args], env=env)


def main() -> int:
    args = sys.argv[1:]
    lint_status = _lint()
    if lint_status:
        return lint_status
    status = _pytest("SQLite (all tests, browser journeys included)", {}, args)
    server, reason = _postgres_server()
    if server is None:
        print(f"\n=== PostgreSQL pass skipped: no server answered ({reason}) ===")
        return status
    pg_status = _pytest(
        "PostgreSQL (all but browser journeys)",
        {"RAILYARD_TEST_POSTGRES": server},
        [*args, "-m", "not e2e"],
    )
    return status or pg_status


if __name__ == "__main__":
    sys.exit(main())
