"""`portrait brief new|presets|show` and `portrait compile`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..brief import example_brief_path, example_briefs, load_brief, preset
from ..errors import BriefError
from ._common import JsonOption, console, print_json


def register(app: typer.Typer) -> None:
    brief_app = typer.Typer(help="Write and inspect portrait briefs.", no_args_is_help=True)
    app.add_typer(brief_app, name="brief")

    @brief_app.command("new")
    def new(
        path: Annotated[Path, typer.Argument(help="Where to write the brief (YAML).")] = Path("brief.yaml"),
        preset_name: Annotated[str, typer.Option("--preset", help="Example brief to start from.")] = "rembrandt-studio-headshot",
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    ) -> None:
        """Write a commented starter brief."""
        source = example_brief_path(preset_name)
        if path.exists() and not force:
            raise BriefError("already exists; nothing was written", file=str(path), hint="pass --force or choose another path")
        path.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        console.print(f"wrote {path} (from preset '{preset_name}'); edit it, then: portrait compile {path} --model flux-1.1-pro")

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
        table = Table("kind", "presets", show_lines=False)
        for kind, names in data.items():
            table.add_row(kind, ", ".join(names))
        console.print(table)

    @brief_app.command("check")
    def check(path: Path, json_out: JsonOption = False) -> None:
        """Validate a brief file."""
        brief = load_brief(path)
        if json_out:
            print_json(brief.model_dump(mode="json"))
        else:
            console.print(f"[green]ok[/] {path}: {brief.name or 'brief'} ({brief.lighting.pattern}, {brief.composition.framing})")

    @app.command("compile")
    def compile_cmd(
        path: Annotated[Path, typer.Argument(help="Brief YAML file.")],
        model: Annotated[str, typer.Option("--model", "-m", help="Catalog model id (see 'portrait models').")],
        provider: Annotated[str | None, typer.Option("--provider", help="bfl, fal, replicate or local.")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Override the brief's seed.")] = None,
        structured: Annotated[bool, typer.Option("--json-prompt", help="FLUX.2: send the structured JSON prompt.")] = False,
        json_out: JsonOption = False,
    ) -> None:
        """Show the exact request a model would receive for a brief."""
        from ..prompting import compile_brief

        brief = load_brief(path)
        if seed is None and brief.output.seed == "random":
            seed = random.SystemRandom().randrange(2**32)
        request = compile_brief(brief, model, provider=provider, seed=seed, structured=structured or None)
        if json_out:
            data = request.model_dump(mode="json", exclude={"request_id", "run_id", "parent_id"})
            data["estimated_cost"] = request.estimated_cost.model_dump()
            print_json(data)
            return
        console.print(f"[bold]{request.model}[/] via {request.provider} · seed {request.seed} · "
                      f"{request.width or '?'}×{request.height or '?'}{' ' + request.aspect_ratio if request.aspect_ratio else ''}"
                      f" · steps {request.steps or '-'} · guidance {request.guidance if request.guidance is not None else '-'}"
                      f" · est. ${request.estimated_cost.usd:.3f}")
        console.print(escape(request.prompt), highlight=False)
        if request.negative_prompt:
            console.print(f"[dim]negative (true CFG {request.true_cfg_scale:g}):[/] {escape(request.negative_prompt)}")
        for note in request.warnings:
            console.print(f"[yellow]•[/] {escape(note)}", highlight=False)
