"""A team studio in a test: a team, its people with their roles, and work made by them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portrait_studio.accounts import Actor
from portrait_studio.config import Studio
from portrait_studio.ledger import Ledger
from portrait_studio.records import Cost, Result

PASSWORD = "correct horse battery"
ROLES = ("owner", "producer", "reviewer", "viewer")


@dataclass
class Team:
    id: str
    name: str
    people: dict[str, Actor] = field(default_factory=dict)  # role -> the member with it

    def email(self, role: str) -> str:
        return self.people[role].email


def make_team(ledger: Ledger, name: str, *, roles: tuple[str, ...] = ROLES) -> Team:
    """A team with one member per role (emails like producer@<name>.test), all with PASSWORD."""
    admin = ledger.as_actor(None)
    team = admin.create_team(name)
    made = Team(id=team.id, name=team.name)
    slug = name.lower().replace(" ", "-")
    for role in roles:
        email = f"{role}@{slug}.test"
        admin.add_person(team.id, email, role, password=PASSWORD)
        made.people[role] = admin.actor_for(email, team.id)
    return made


def png(shade: int, size: tuple[int, int] = (16, 16)) -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", size, (shade % 256, 60, 120)).save(buf, "PNG")
    return buf.getvalue()


def record_shoot(ledger: Ledger, images_dir: Path, n: int = 2, *, shade: int = 0, out_dir: Path | None = None) -> tuple[str, list]:  # type: ignore[type-arg]
    """A finished shoot recorded by `ledger`'s actor (no provider: the results are stored directly)."""
    from portrait_studio.brief import example_brief_path, load_brief
    from portrait_studio.prompting import compile_brief

    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    reqs = [compile_brief(brief, "flux-1.1-pro", seed=1000 * shade + s) for s in range(n)]
    run = ledger.create_run("shoot", brief=brief.model_dump(mode="json"), name=f"shoot {shade}",
                            out_dir=str(out_dir) if out_dir else None)
    ledger.add_requests(run, reqs)
    images = []
    for k, req in enumerate(reqs):
        ledger.reserve(req.request_id, 0.04, limit_usd=None, run_id=run, sandbox=True)
        result = Result(request_id=req.request_id, provider="bfl", model="flux-1.1-pro", image=png(shade * 10 + k),
                        seed=req.seed, cost=Cost(credits=4, usd=0.04), sandbox=True)
        images.append(ledger.record_image(result, images_dir=images_dir, run_id=run, request_id=req.request_id,
                                          charge=result.cost,
                                          out_path=(out_dir / f"{k:02d}.png") if out_dir else None))
    return run, images


def team_shoot(studio: Studio, actor: Actor, seeds: list[int]) -> tuple[str, list[Any]]:
    """A finished shoot made by `actor` (results stored directly, as a provider would; delivered and labelled)."""
    from _web_helpers import BRIEF, portrait_png
    from portrait_studio.engine import Engine
    from portrait_studio.shoot import plan_shoot

    plan = plan_shoot(BRIEF, ["flux-1.1-pro"], seeds).to_plan()
    with Ledger(studio.ledger_path) as base:
        ledger = base.as_actor(actor)
        engine = Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir, providers={})
        engine.preflight = lambda plan: None  # type: ignore[method-assign]
        run_id = engine.record(plan)
        out = Path(ledger.run(run_id).out_dir or "")
        made = []
        for n, row in enumerate(ledger.requests(run_id)):
            ledger.reserve(row.id, 0.04, limit_usd=None, run_id=run_id, sandbox=True)
            result = Result(request_id=row.id, provider="bfl", model=row.model, seed=row.seed, sandbox=True,
                            image=portrait_png(shade=(seeds[0] * 7 + n) % 200 + 1), cost=Cost(credits=4, usd=0.04))
            image = ledger.record_image(result, images_dir=studio.images_dir, run_id=run_id, request_id=row.id,
                                        out_path=out / f"{n + 1:02d}.png", charge=result.cost)
            made.append(engine.deliver(image))
        ledger.set_run_status(run_id, "done")
    return run_id, made
