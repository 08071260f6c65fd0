"""Every test runs against a fresh studio folder; nothing touches the user's home.

`pytest --ledger postgresql` runs the same tests with every studio's ledger in a fresh
PostgreSQL database of a throwaway cluster (see `_postgres.py`); tests that take the
`ledger_url` fixture run against both databases in every run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portrait_studio.config import DATABASE_ENV, HOME_ENV, SERVER_ENV, TOKEN_ENV, Studio

KEY_VARS = ("BFL_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN")
REQUIRE_POSTGRES_ENV = "PORTRAIT_TEST_REQUIRE_POSTGRES"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--ledger", choices=("sqlite", "postgresql"), default="sqlite",
                     help="where every test studio keeps its ledger (default: sqlite)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """The throwaway PostgreSQL cluster (skipped where PostgreSQL is not installed, unless CI demands it)."""
    from _postgres import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(bindir)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger location on each database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    cluster = request.getfixturevalue("postgres")
    return str(cluster.new_database())  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    home = tmp_path / "studio"
    monkeypatch.setenv(HOME_ENV, str(home))
    for var in (*KEY_VARS, DATABASE_ENV, TOKEN_ENV, SERVER_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if request.config.getoption("--ledger") == "postgresql" and "ledger_url" not in request.fixturenames:
        cluster = request.getfixturevalue("postgres")
        monkeypatch.setenv(DATABASE_ENV, cluster.new_database())  # type: ignore[attr-defined]
    return home


@pytest.fixture(autouse=True)
def fresh_latency_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing learnt in this process of any model's latency. The memory is
    keyed by the provider's URL, and a sandbox can get the port an earlier test's sandbox had,
    with another latency: the client would start from what that one taught it."""
    from portrait_studio.providers._hosted import LatencyLog

    monkeypatch.setattr(LatencyLog, "_all", {})


@pytest.fixture
def studio(studio_home: Path) -> Studio:
    return Studio(studio_home)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `portrait ARGS...` in-process the way a user would; returns (exit code, stdout, stderr)."""
    from portrait_studio.cli import app, run_cli

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["portrait", *map(str, args)])
        code = 0
        try:
            run_cli(app)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "portrait_studio" / "presets" / "briefs"


@pytest.fixture
def example_brief_file() -> Path:
    return EXAMPLES / "rembrandt-studio-headshot.yaml"
