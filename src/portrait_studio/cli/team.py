"""`portrait team …` (accounts, roles, tokens, budgets) and the review step (`approve`, `reject`,
`export-approved`).

Who may run them: with an API token configured (`token` in config.toml, or $PORTRAIT_TOKEN) you
act as its owner, and only owners manage members, budgets and other people's tokens. Without a
token, a command run against the database itself (the studio folder's ledger.db, or the
`database` URL) acts as the database's administrator: that is how the first owner is made.
"""

from __future__ import annotations

import os
import secrets as pysecrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..config import Studio
from ..errors import UsageError
from ..ledger import Ledger, open_ledger
from ._common import HomeOption, JsonOption, console, print_json, studio
from ._options import check_id, finite

__all__ = ["register"]

ImageIdArg = Annotated[str, typer.Argument(help="Image id or sha256 prefix (see 'portrait log').", metavar="IMAGE",
                                           callback=lambda v: check_id(v, "image id"))]
RunOption = Annotated[str | None, typer.Option("--run", help="Only this run's images.", metavar="RUN",
                                               callback=lambda v: check_id(v, "run id"))]
TeamOption = Annotated[str | None, typer.Option("--team", help="Team name or id (default: yours, or the only one).")]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="postgresql://USER:PASSWORD@HOST/NAME for a shared ledger (default: config.toml's, "
                 "else the studio folder's ledger.db).", envvar="PORTRAIT_DATABASE", show_envvar=False),
]


def _studio(home: Path | None, database: str | None = None) -> Studio:
    s = studio(home)
    return Studio(s.home, database=database) if database else s


def _ledger(s: Studio) -> Ledger:
    """As the token's owner when a token is configured, else as the database's administrator."""
    return open_ledger(s) if s.token else Ledger(s.ledger_path)


def _team(ledger: Ledger, team: str | None) -> str:
    if team:
        return ledger.team(team).id
    if ledger.actor is not None:
        return ledger.actor.team_id
    teams = ledger.teams()
    if len(teams) == 1:
        return teams[0].id
    if not teams:
        raise UsageError("this studio has no team yet", field="--team", hint="start with 'portrait team init'")
    raise UsageError(f"this studio has {len(teams)} teams", field="--team",
                     hint="name one: " + ", ".join(t.name for t in teams))


def _password(given: str | None) -> tuple[str, bool]:
    if given:
        return given, False
    return pysecrets.token_urlsafe(12), True


def write_config(s: Studio, **values: str) -> Path:
    """Set top-level string keys in config.toml (kept private: it may hold a token)."""
    import json
    import tomllib

    path = s.config_path
    lines = path.read_text().splitlines() if path.exists() else []
    first_table = next((n for n, line in enumerate(lines) if line.strip().startswith("[")), len(lines))
    head = [line for line in lines[:first_table]
            if not any(line.strip().startswith(f"{k} ") or line.strip().startswith(f"{k}=") for k in values)]
    head += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    text = "\n".join([*head, *lines[first_table:]]) + "\n"
    tomllib.loads(text)  # still valid TOML
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def _say(json_out: bool, data: dict[str, Any], *lines: str) -> None:
    """The command's result: JSON with --json, else its lines for a person."""
    if json_out:
        print_json(data)
        return
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    team_app = typer.Typer(help="A team studio: accounts, roles, API tokens and budgets.", no_args_is_help=True)
    app.add_typer(team_app, name="team")
    token_app = typer.Typer(help="API tokens for scripts and the CLI.", no_args_is_help=True)
    team_app.add_typer(token_app, name="token")
    budget_app = typer.Typer(help="Spending limits per team or member, per day/month/total, per project.",
                             no_args_is_help=True)
    team_app.add_typer(budget_app, name="budget")

    @team_app.command("init")
    def init(
        team: Annotated[str, typer.Option("--team", help="The team's name.")],
        owner: Annotated[str, typer.Option("--owner", help="The first owner's email (their login).")],
        password: Annotated[str | None, typer.Option("--password", help="Their password (default: one is made and shown once).")] = None,
        name: Annotated[str | None, typer.Option("--name", help="Their display name.")] = None,
        database: DatabaseOption = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Turn this studio into a team studio: the team, its first owner, and an API token for this CLI
        (written to config.toml with the database URL). Work made so far joins the team."""
        s = _studio(home, database)
        secret, made = _password(password)
        with Ledger(s.ledger_path) as ledger:
            row = ledger.create_team(team)
            user = ledger.create_user(owner, password=secret, name=name)
            ledger.add_member(row.id, user.id, "owner")
            adopted = ledger.adopt_unowned(row.id)
            token = ledger.create_token(user.id, row.id, name="cli (team init)")
            where = ledger.location
        path = write_config(s, token=token, **({"database": database} if database else {}))
        _say(json_out,
             {"team": row.model_dump(mode="json"), "owner": user.email, "password": secret if made else None,
              "adopted_runs": adopted, "config": str(path), "ledger": where},
             f"team [bold]{escape(row.name)}[/] in {escape(where)}; owner {escape(user.email)}"
             + (f"; {adopted} earlier run(s) now belong to the team" if adopted else ""),
             *([f"their password (shown once): [bold]{escape(secret)}[/]"] if made else []),
             f"this CLI now acts as {escape(user.email)} (token in {escape(str(path))})")

    @team_app.command("create")
    def create(team: Annotated[str, typer.Argument(help="The new team's name.")], json_out: JsonOption = False,
               home: HomeOption = None) -> None:
        """Another team in the same studio (administrator only: run it with the database, no token)."""
        with Ledger(studio(home).ledger_path) as ledger:
            row = ledger.create_team(team)
        _say(json_out, row.model_dump(mode="json"),
             f"team {escape(row.name)} ({row.id}); add an owner with: portrait team add EMAIL --role owner "
             f"--team {escape(row.name)!r}")

    @team_app.command("list")
    def list_teams(json_out: JsonOption = False, home: HomeOption = None) -> None:
        """The teams you can see."""
        with _ledger(studio(home)) as ledger:
            teams = ledger.teams()
        if json_out:
            print_json([t.model_dump(mode="json") for t in teams])
            return
        for t in teams:
            console.print(f"{t.id}  {escape(t.name)}", highlight=False)

    @team_app.command("add")
    def add(
        email: Annotated[str, typer.Argument(help="Their email (their login).")],
        role: Annotated[str, typer.Option("--role", help="owner, producer (spends), reviewer (approves, exports) or viewer.")],
        password: Annotated[str | None, typer.Option("--password", help="Their first password (default: made and shown once).")] = None,
        name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
        team: TeamOption = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Add someone to the team with a role (making their account if they have none), or change their role."""
        secret, made = _password(password)
        with _ledger(studio(home)) as ledger:
            team_id = _team(ledger, team)
            member, created = ledger.add_person(team_id, email, role, password=secret, name=name)
            team_name = ledger.team(team_id).name
        shown = secret if (created and made) else None
        _say(json_out, {**member.model_dump(mode="json"), "created": created, "password": shown},
             f"{escape(member.email)} is a {member.role} in {escape(team_name)}",
             *([f"their first password (shown once): [bold]{escape(shown)}[/]"] if shown else []))

    @team_app.command("remove")
    def remove(email: Annotated[str, typer.Argument(help="Their email.")], team: TeamOption = None,
               json_out: JsonOption = False, home: HomeOption = None) -> None:
        """Take someone out of the team (their sessions end and their tokens for it are revoked)."""
        with _ledger(studio(home)) as ledger:
            team_id = _team(ledger, team)
            ledger.remove_member(team_id, email)
        _say(json_out, {"removed": email, "team_id": team_id}, f"removed {escape(email)}")

    @team_app.command("members")
    def members(team: TeamOption = None, json_out: JsonOption = False, home: HomeOption = None) -> None:
        """Who is in the team, with their roles."""
        with _ledger(studio(home)) as ledger:
            rows = ledger.members(_team(ledger, team))
        if json_out:
            print_json([r.model_dump(mode="json") for r in rows])
            return
        table = Table("email", "name", "role")
        for r in rows:
            table.add_row(r.email, r.name or "", r.role)
        console.print(table)

    @team_app.command("password")
    def password_cmd(
        email: Annotated[str, typer.Argument(help="Whose password.")],
        password: Annotated[str | None, typer.Option("--password", help="The new password (default: made and shown once).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Set someone's password (owners; anyone for their own). Signs them out everywhere."""
        secret, made = _password(password)
        with _ledger(studio(home)) as ledger:
            ledger.set_password(email, secret)
        _say(json_out, {"email": email, "password": secret if made else None},
             f"password set for {escape(email)}" + (f": [bold]{escape(secret)}[/] (shown once)" if made else ""))

    @token_app.command("create")
    def token_create(
        user: Annotated[str | None, typer.Option("--user", help="Whose token (default: yours).")] = None,
        name: Annotated[str, typer.Option("--name", help="What it is for.")] = "cli",
        team: TeamOption = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """A new API token (printed once): send it as 'Authorization: Bearer …', or put it in config.toml."""
        with _ledger(studio(home)) as ledger:
            who = user or (ledger.actor.email if ledger.actor else None)
            if who is None:
                raise UsageError("whose token?", field="--user", hint="--user EMAIL")
            token = ledger.create_token(who, team or (ledger.actor.team_id if ledger.actor else None), name=name)
        if json_out:
            print_json({"user": who, "name": name, "token": token})
            return
        console.print(token, highlight=False, soft_wrap=True, markup=False)

    @token_app.command("list")
    def token_list(json_out: JsonOption = False, home: HomeOption = None) -> None:
        """The tokens you may see (an owner: the team's; others: their own)."""
        with _ledger(studio(home)) as ledger:
            rows = ledger.tokens()
        if json_out:
            print_json([r.model_dump(mode="json") for r in rows])
            return
        table = Table("id", "user", "name", "revoked")
        for r in rows:
            table.add_row(r.id, r.user_id, r.name, "yes" if r.revoked else "")
        console.print(table)

    @token_app.command("revoke")
    def token_revoke(token_id: Annotated[str, typer.Argument(help="Token id (see 'portrait team token list').",
                                                             callback=lambda v: check_id(v, "token id"))],
                     json_out: JsonOption = False, home: HomeOption = None) -> None:
        """Revoke a token: scripts using it are refused from now on."""
        with _ledger(studio(home)) as ledger:
            ledger.revoke_token(token_id)
        _say(json_out, {"revoked": token_id}, f"revoked {token_id}")

    @budget_app.command("set")
    def budget_set(
        amount: Annotated[float, typer.Argument(help="Dollars (0 or more).", callback=finite(low=0))],
        period: Annotated[str, typer.Option("--period", help="day, month or total.")] = "month",
        user: Annotated[str | None, typer.Option("--user", help="One member's budget (default: the whole team's).")] = None,
        project: Annotated[str | None, typer.Option("--project", help="Only this project's runs.")] = None,
        team: TeamOption = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Set a spending limit; every request is checked against every budget that applies before it is sent."""
        with _ledger(studio(home)) as ledger:
            row = ledger.set_budget(_team(ledger, team), amount, period=period, user=user, project=project)
        _say(json_out, row.model_dump(mode="json"),
             f"budget {row.id}: ${row.limit_usd:.2f} for the {row.scope} (${row.spent_usd:.2f} spent so far)")

    @budget_app.command("list")
    def budget_list(team: TeamOption = None, json_out: JsonOption = False, home: HomeOption = None) -> None:
        """The team's budgets with what is spent (or in flight) in each one's current period."""
        with _ledger(studio(home)) as ledger:
            rows = ledger.budgets(_team(ledger, team))
        if json_out:
            print_json([r.model_dump(mode="json") for r in rows])
            return
        table = Table("id", "scope", "limit", "spent", "sandbox")
        for r in rows:
            table.add_row(r.id, r.scope, f"${r.limit_usd:.2f}", f"${r.spent_usd:.2f}", f"${r.sandbox_usd:.2f}")
        console.print(table)

    @budget_app.command("remove")
    def budget_remove(budget_id: Annotated[str, typer.Argument(help="Budget id (see 'portrait team budget list').",
                                                               callback=lambda v: check_id(v, "budget id"))],
                      json_out: JsonOption = False, home: HomeOption = None) -> None:
        """Remove a budget."""
        with _ledger(studio(home)) as ledger:
            ledger.remove_budget(budget_id)
        _say(json_out, {"removed": budget_id}, f"removed {budget_id}")

    # --- the review step ---------------------------------------------------------------------------
    @app.command("approve")
    def approve(
        image: ImageIdArg,
        comment: Annotated[str | None, typer.Option("--comment", help="Why (kept with the approval).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Approve an image for delivery (reviewers and owners)."""
        from ..approvals import review_image

        with open_ledger(studio(home)) as ledger:
            row = review_image(ledger, image, "approved", comment)
        _say(json_out, row.model_dump(mode="json"), f"approved {row.result_id}")

    @app.command("reject")
    def reject(
        image: ImageIdArg,
        comment: Annotated[str | None, typer.Option("--comment", help="What to change (required).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Reject an image, saying what to change (reviewers and owners)."""
        from ..approvals import review_image

        with open_ledger(studio(home)) as ledger:
            row = review_image(ledger, image, "rejected", comment)
        _say(json_out, row.model_dump(mode="json"), f"rejected {row.result_id}: {escape(row.comment or '')}")

    @app.command("export-approved")
    def export_approved_cmd(
        out: Annotated[Path, typer.Option("--out", help="Folder to ship into.", file_okay=False, metavar="FOLDER")],
        run: RunOption = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Ship the approved images: labelled copies, an audit record each, and a manifest."""
        from ..approvals import export_approved

        s = studio(home)
        with open_ledger(s) as ledger:
            run_id = ledger.run(run).id if run else None
            done = export_approved(s, ledger, out, run_id=run_id)
        _say(json_out, done.model_dump(mode="json"),
             f"shipped {len(done.files)} approved image(s) to {escape(str(done.folder))}"
             + (f"; left out {len(done.skipped)} (see manifest.json)" if done.skipped else ""))
