import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

PG_ADMIN = os.environ.get("KRAFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_url() -> str:
    """A fresh database on the test PostgreSQL server, or a loud skip (a failure in CI)."""
    import psycopg

    name = f"kraft_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {e}")
        pytest.skip(f"SKIPPED: no PostgreSQL at {PG_ADMIN} ({e}); .ci/run starts one")
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kraft.db'}"
        return
    url = _postgres_url()
    yield url
    _drop(url)


@pytest.fixture(autouse=True)
def keep_the_umask():
    """`kraft serve` and `kraft admin` set their process's umask to 077 (Kraft's state is
    private); run in-process by a test (typer's CliRunner), that must not leak into the
    files later tests write for their jobs to read."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


def _kraft_accounts() -> set[str]:
    import pwd

    return {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith("kraft-")}


@pytest.fixture(scope="session", autouse=True)
def remove_accounts_made_here():
    """A root `kraft serve` makes an account per tenant (kraft-<tenant>); the ones this test
    session made are removed at its end, so the machine is left as it was."""
    before = _kraft_accounts()
    yield
    if os.geteuid() == 0:
        import subprocess

        for name in sorted(_kraft_accounts() - before):
            subprocess.run(["userdel", name], capture_output=True)
