"""Setting up a team studio from the command line, and the CLI acting as a member with an API token."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from portrait_studio.brief import example_brief_path
from portrait_studio.config import TOKEN_ENV, Studio
from portrait_studio.ledger import Ledger

BRIEF = example_brief_path("rembrandt-studio-headshot")
PASSWORD = "a long enough password"


def _config(home: Path) -> dict:  # type: ignore[type-arg]
    return tomllib.loads((home / "config.toml").read_text())


def test_a_team_studio_in_three_commands_then_the_cli_acts_as_each_member(
    cli, studio_home: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    studio_home.mkdir(parents=True, exist_ok=True)
    (studio_home / "config.toml").write_text('creator = "Acme Studio"\n\n[c2pa]\nalgorithm = "es256"\n')
    code, out, err = cli("team", "init", "--team", "Acme", "--owner", "ana@acme.test", "--password", PASSWORD,
                         "--database", ledger_url)
    assert code == 0, err
    config = _config(studio_home)
    assert config["database"] == ledger_url and config["token"].startswith("pst_")
    assert config["creator"] == "Acme Studio" and config["c2pa"]["algorithm"] == "es256"  # the rest is kept
    assert stat.S_IMODE(os.stat(studio_home / "config.toml").st_mode) == 0o600
    code, out, err = cli("team", "add", "ben@acme.test", "--role", "producer")
    assert code == 0 and "ben@acme.test is a producer in Acme" in out and "shown once" in out, err
    code, out, err = cli("team", "add", "cleo@acme.test", "--role", "reviewer", "--password", PASSWORD)
    assert code == 0, err
    code, out, err = cli("team", "members", "--json")
    assert {(m["email"], m["role"]) for m in json.loads(out)} == {
        ("ana@acme.test", "owner"), ("ben@acme.test", "producer"), ("cleo@acme.test", "reviewer")}
    code, out, err = cli("team", "budget", "set", "5", "--period", "day")
    assert code == 0 and "$5.00 for the team per day" in out, err

    def token_for(email: str) -> str:
        code, out, err = cli("team", "token", "create", "--user", email)
        assert code == 0, err
        return out.strip()

    ben, cleo = token_for("ben@acme.test"), token_for("cleo@acme.test")

    monkeypatch.setenv(TOKEN_ENV, ben)  # Ben, a producer, shoots from his terminal
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "2", "--sandbox", "always", "--json")
    assert code == 0, err
    shot = json.loads(out)
    code, out, err = cli("team", "budget", "set", "500")
    assert code == 2 and "may not manage the team's members, budgets" in err
    code, out, err = cli("approve", shot["images"][0]["id"])
    assert code == 2 and "producer in Acme and may not pick, approve" in err

    monkeypatch.setenv(TOKEN_ENV, cleo)  # Cleo, a reviewer, approves one and rejects the other
    first, second = (i["id"] for i in shot["images"])
    assert cli("approve", first, "--comment", "client pick")[0] == 0
    code, out, err = cli("reject", second)
    assert code == 2 and "--comment" in err
    assert cli("reject", second, "--comment", "hands")[0] == 0
    code, out, err = cli("export-approved", "--out", studio_home / "delivery")
    assert code == 0 and "shipped 1 approved image" in out, err
    manifest = json.loads((studio_home / "delivery" / "manifest.json").read_text())
    assert [e["image_id"] for e in manifest["images"]] == [first]
    assert (studio_home / "delivery" / manifest["images"][0]["audit"]).is_file()
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "1", "--sandbox", "always")
    assert code == 2 and "reviewer in Acme and may not spend" in err

    monkeypatch.setenv(TOKEN_ENV, "")
    (studio_home / "config.toml").write_text(f'database = "{ledger_url}"\n')  # no token: who is this?
    code, out, err = cli("log")
    assert code == 2 and "has accounts, so commands need your API token" in err
    with Ledger(Studio(studio_home).ledger_path) as ledger:
        run = ledger.run(shot["run_id"])
        ben_id = ledger.actor_for("ben@acme.test").user_id
        assert run.created_by == ben_id and {i.created_by for i in ledger.images(run_id=run.id)} == {ben_id}
        (budget,) = ledger.budgets("Acme")
        assert budget.sandbox_usd == pytest.approx(0.08)


def test_team_init_adopts_the_one_person_studios_work(cli, studio_home: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "1", "--sandbox", "always", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = cli("team", "init", "--team", "Solo", "--owner", "me@solo.test")
    assert code == 0 and "1 earlier run(s) now belong to the team" in out and "shown once" in out, err
    code, out, err = cli("log", "--json")
    assert code == 0 and {r["run_id"] for r in json.loads(out)} == {run_id}, err


def test_serving_off_loopback_is_allowed_once_everyone_signs_in(studio: Studio) -> None:
    from portrait_studio.errors import StudioError
    from portrait_studio.web.server import check_bind

    with pytest.raises(StudioError, match="anyone on that network"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", None, accounts=True)


def test_the_cli_works_through_a_team_studios_server_with_a_token(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """Someone who reaches the server but not its database: `server` + `token`, and `portrait remote`."""
    from _engine_helpers import starter
    from _team_helpers import make_team
    from portrait_studio.config import SERVER_ENV
    from portrait_studio.web import create_app
    from portrait_studio.web.server import ServerThread

    served = Studio(tmp_path / "server-studio", environ={})
    with Ledger(served.ledger_path) as ledger:
        team = make_team(ledger, "Acme")
        tokens = {role: ledger.create_token(team.email(role), team.id) for role in team.people}
    with ServerThread(create_app(served, checker=None, start_sandbox=starter(latency=0.05))) as server:
        monkeypatch.setenv(SERVER_ENV, server.url)
        monkeypatch.setenv(TOKEN_ENV, tokens["producer"])
        code, out, err = cli("remote", "whoami")
        assert code == 0 and "producer@acme.test · producer · Acme" in out, err
        code, out, err = cli("remote", "shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "2", "--sandbox", "always",
                             "--project", "spring", "--json")
        assert code == 0, err
        shot = json.loads(out)
        assert shot["job"]["status"] == "done" and len(shot["progress"]["images"]) == 2
        code, out, err = cli("remote", "jobs", "--json")
        assert [j["id"] for j in json.loads(out)] == [shot["job_id"]]

        monkeypatch.setenv(TOKEN_ENV, tokens["viewer"])
        code, out, err = cli("remote", "shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "1")
        assert code == 2 and "viewer in Acme and may not spend" in err

        monkeypatch.setenv(TOKEN_ENV, tokens["reviewer"])
        first = shot["progress"]["images"][0]["id"]
        assert cli("remote", "approve", first, "--comment", "yes")[0] == 0
        code, out, err = cli("remote", "export-approved", "--run", shot["run_id"])
        assert code == 0 and "shipped into the studio's exports/approved-" in out, err

        monkeypatch.setenv(TOKEN_ENV, "pst_not-a-real-token")
        code, out, err = cli("remote", "whoami")
        assert code == 2 and "unknown or revoked" in err
    with Ledger(served.ledger_path) as ledger:
        run = ledger.run(shot["run_id"])
        assert run.project == "spring" and run.created_by == team.people["producer"].user_id
        assert ledger.image(first).approved
