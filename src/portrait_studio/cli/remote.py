"""`portrait remote …`: work in a team studio through its web API (for people who reach its server but not
its database). The address and your API token come from config.toml (`server`, `token`) or
$PORTRAIT_SERVER and $PORTRAIT_TOKEN."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import UsageError
from ._common import HomeOption, JsonOption, console, print_json, studio
from ._options import BriefArg, BudgetOption, ModelsOption, SandboxOption, SeedsOption, check_id, seed_option

__all__ = ["register"]


def _client(home: Path | None) -> Any:
    from ..client import StudioClient

    s = studio(home)
    if not s.server:
        raise UsageError("no studio server is configured", field="server",
                         hint="put server = \"https://studio.example.com\" and token = \"pst_...\" in config.toml "
                         "(or set PORTRAIT_SERVER and PORTRAIT_TOKEN)")
    return StudioClient(s.server, s.token or "")


def _review(home: Path | None, image: str, decision: str, comment: str | None, json_out: bool) -> None:
    """Approve or reject through the server, as the token's owner."""
    with _client(home) as client:
        done = client.review(image, decision, comment)
    if json_out:
        print_json(done["review"])
        return
    console.print(f"{decision} {image}")


def _say_job(job: dict[str, Any]) -> None:
    line = f"{job['status']}: {job['title']}" + (f" — {job['message']}" if job.get("message") else "")
    console.print(escape(line), highlight=False)


def register(app: typer.Typer) -> None:
    remote = typer.Typer(help="A team studio's server, through its web API (server and token in config.toml).",
                         no_args_is_help=True)
    app.add_typer(remote, name="remote")

    @remote.command("whoami")
    def whoami(json_out: JsonOption = False, home: HomeOption = None) -> None:
        """Who the token signs you in as, in which team, with which role."""
        with _client(home) as client:
            me = client.me()
        if json_out:
            print_json({k: v for k, v in me.items() if k != "csrf"})
            return
        console.print(f"{escape(me['email'])} · {me['role']} · {escape(me['team_name'])} on {escape(client.server)}",
                      highlight=False)

    @remote.command("shoot")
    def shoot(
        brief_path: BriefArg,
        model: ModelsOption,
        seeds: SeedsOption = None,
        seed: Annotated[int | None, seed_option()] = None,
        compare: Annotated[bool, typer.Option("--compare", help="Side by side, one row per model.")] = False,
        project: Annotated[str | None, typer.Option("--project", help="The project it counts against.")] = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        no_wait: Annotated[bool, typer.Option("--no-wait", help="Queue it and return.")] = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Shoot on the studio's server as you; it runs there as a job (and survives its restarts)."""
        from ..brief import load_brief

        brief = load_brief(brief_path).model_dump(mode="json")
        with _client(home) as client:
            started = client.shoot(brief, model, seeds=seeds if seed is None else None, seed=seed,
                                   kind="compare" if compare else "shoot", project=project, budget=budget, sandbox=sandbox)
            if not json_out:
                console.print(f"queued {started['job_id']}: run {started['run_id']} · {started['images']} image(s), "
                              f"est. ${started['estimated_usd']:.3f} · {escape(client.server + started['url'])}",
                              highlight=False)
            if no_wait:
                if json_out:
                    print_json(started)
                return
            job = client.wait(started["job_id"], on_update=None if json_out else _say_job)
            progress = client.progress(started["run_id"])
        if json_out:
            print_json({**started, "job": job, "progress": progress})
            return
        for image in progress.get("images", []):
            console.print(f"  {image['id']}  {image['model']}  seed {image['seed']}", highlight=False)
        if job["status"] != "done":
            raise SystemExit(1)

    @remote.command("jobs")
    def jobs(json_out: JsonOption = False, home: HomeOption = None) -> None:
        """Your team's jobs on the server, newest first."""
        with _client(home) as client:
            rows = client.jobs()
        if json_out:
            print_json(rows)
            return
        for job in rows:
            console.print(f"{job['id']}  {job['status']:<8} {escape(job['title'])}", highlight=False)

    @remote.command("approve")
    def approve(
        image: Annotated[str, typer.Argument(help="Image id.", metavar="IMAGE",
                                             callback=lambda v: check_id(v, "image id"))],
        comment: Annotated[str | None, typer.Option("--comment", help="Why (kept with the approval).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Approve an image (reviewers and owners)."""
        _review(home, image, "approved", comment, json_out)

    @remote.command("reject")
    def reject(
        image: Annotated[str, typer.Argument(help="Image id.", metavar="IMAGE",
                                             callback=lambda v: check_id(v, "image id"))],
        comment: Annotated[str | None, typer.Option("--comment", help="What to change (required).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Reject an image, saying what to change (reviewers and owners)."""
        _review(home, image, "rejected", comment, json_out)

    @remote.command("export-approved")
    def export_approved(
        run: Annotated[str | None, typer.Option("--run", help="Only this run's images.", metavar="RUN",
                                                callback=lambda v: check_id(v, "run id"))] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Ship the approved images on the server (labelled copies, audit records, a manifest)."""
        with _client(home) as client:
            started = client.export_approved(run)
            job = client.wait(started["job_id"], on_update=None if json_out else _say_job)
        if json_out:
            print_json(job)
        elif job["status"] == "done":
            console.print(f"shipped into the studio's {escape(str(job['result_id']))}", highlight=False)
        if job["status"] != "done":
            raise SystemExit(1)
