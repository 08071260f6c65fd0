"""`portrait brief new|presets|check` and `portrait compile`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any

import typer

from ..brief import example_brief_path, example_briefs, load_brief, preset
from ..errors import BriefError
from ..records import Request
from ..seeds import SEED_MAX, SEED_MIN
from ._common import JsonOption, console, escape, new_app, plain, print_json
from ._options import BriefArg, ProviderOption, seed_option
from ._tables import new_table

__all__ = ["describe_size", "register"]


def describe_size(request: Request) -> str:
    """'768×1024 (0.75 MP)', or for models that take an aspect ratio: '3:4 at 4 MP' (never '?×?')."""
    if request.width and request.height:
        return f"{request.width}×{request.height} ({request.width * request.height / 1024**2:.2g} MP)"
    from ..catalog import get_model

    rules = get_model(request.model).size_on(request.provider)
    if rules.kind == "input" and not request.aspect_ratio:
        return "the input image's size"
    ratio = request.aspect_ratio or ("the input's aspect ratio" if request.images else "1:1")
    mp = rules.fixed_mp or rules.max_mp
    return ratio + (f" at {'' if rules.fixed_mp else 'up to '}{mp:g} MP" if mp else "")


def register(app: typer.Typer) -> None:
    brief_app = new_app("Write and inspect portrait briefs.")
    app.add_typer(brief_app, name="brief")

    @brief_app.command("new")
    def new(
        path: Annotated[Path, typer.Argument(help="Where to write the brief (YAML).", dir_okay=False,
                                             metavar="PATH")] = Path("brief.yaml"),
        preset_name: Annotated[str, typer.Option("--preset", help="Example brief to start from "
                                                 "(see 'portrait brief presets').")] = "rembrandt-studio-headshot",
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
        json_out: JsonOption = False,
    ) -> None:
        """Write a commented starter brief."""
        source = example_brief_path(preset_name)
        if path.exists() and not force:
            raise BriefError("already exists; nothing was written", file=str(path), hint="pass --force or choose another path")
        path.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        if json_out:
            print_json({"path": str(path), "preset": preset_name})
            return
        console.print(f"wrote {escape(str(path))} (from preset '{escape(preset_name)}'); edit it, then: "
                      f"portrait compile {escape(str(path))} --model flux-1.1-pro", highlight=False)

    @brief_app.command("presets")
    def presets(json_out: JsonOption = False) -> None:
        """List example briefs and the lighting, composition, lens and background presets."""
        data = {
            "briefs": example_briefs(),
            "lighting": list(preset("lighting")),
            "compositions": list(preset("compositions")),
            "angles": list(preset("angles")),
            "lenses": list(preset("lenses")),
            "backgrounds": list(preset("backgrounds")),
            "avoid_default": preset("avoid")["default"],
        }
        if json_out:
            print_json(data)
            return
        table = new_table(("kind", {}), ("presets", {"overflow": "fold", "ratio": 1}))
        for kind, names in data.items():
            table.add_row(plain(kind), plain(", ".join(names)))
        console.print(table)

    @brief_app.command("check")
    def check(path: BriefArg, json_out: JsonOption = False) -> None:
        """Validate a brief file."""
        brief = load_brief(path)
        if json_out:
            print_json(brief.model_dump(mode="json"))
        else:
            console.print(f"[green]ok[/] {escape(str(path))}: {escape(brief.name or 'brief')} "
                          f"({escape(brief.lighting.pattern)}, {escape(brief.composition.framing)})", highlight=False)

    @app.command("compile")
    def compile_cmd(
        path: BriefArg,
        model: Annotated[str, typer.Option("--model", "-m", help="Catalog model id (see 'portrait models').")],
        provider: ProviderOption = None,
        seed: Annotated[int | None, seed_option("Override the brief's seed.")] = None,
        structured: Annotated[bool, typer.Option("--json-prompt", help="FLUX.2: send the structured JSON prompt.")] = False,
        json_out: JsonOption = False,
    ) -> None:
        """Show the exact request a model would receive for a brief."""
        from ..prompting import compile_brief

        brief = load_brief(path)
        if seed is None and brief.output.seed == "random":
            seed = random.SystemRandom().randint(SEED_MIN, SEED_MAX)
        request = compile_brief(brief, model, provider=provider, seed=seed, structured=structured or None)
        if json_out:
            data: dict[str, Any] = request.model_dump(mode="json", exclude={"request_id", "run_id", "parent_id"})
            data["estimated_cost"] = request.estimated_cost.model_dump()
            data["size"] = describe_size(request)
            print_json(data)
            return
        facts = [f"via {request.provider}", f"seed {request.seed}", describe_size(request),
                 f"steps {request.steps or '-'}",
                 f"guidance {request.guidance if request.guidance is not None else '-'}",
                 f"est. ${request.estimated_cost.usd:.3f}"]
        console.print(plain(request.model, "bold"), plain(" · ".join(facts)))
        console.print(plain(request.prompt))
        if request.negative_prompt:
            console.print(f"[dim]negative (true CFG {request.true_cfg_scale:g}):[/] {escape(request.negative_prompt)}",
                          highlight=False)
        for note in request.warnings:
            console.print(f"[yellow]•[/] {escape(note)}", highlight=False)
