"""`portrait review`: declared mix against the target, and face exposure by skin-tone group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import StudioError
from ._common import HomeOption, JsonOption, console, print_json, studio

__all__ = ["parse_target_mix", "register"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def parse_target_mix(values: list[str]) -> dict[str, dict[str, float]]:
    """`skin_tone=light:1,deep:1` (repeatable) or a JSON file of the same shape."""
    mix: dict[str, dict[str, float]] = {}
    for value in values:
        if value.endswith(".json") and Path(value).exists():
            for attr, shares in json.loads(Path(value).read_text()).items():
                mix.setdefault(attr, {}).update({str(k): float(v) for k, v in shares.items()})
            continue
        attr, sep, rest = value.partition("=")
        if not sep or not rest:
            raise StudioError(
                f"--target-mix '{value}' is not ATTRIBUTE=value:share,...",
                hint="e.g. --target-mix 'skin_tone=light:1,medium brown:1,deep:1'",
            )
        for part in rest.split(","):
            name, colon, share = part.rpartition(":")
            try:
                mix.setdefault(attr.strip(), {})[(name if colon else share).strip()] = (
                    float(share) if colon else 1.0
                )
            except ValueError as exc:
                raise StudioError(
                    f"--target-mix: '{part}' has no numeric share", hint="write value:share"
                ) from exc
    return mix


def _images(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        else:
            found.append(path)
    if not found:
        raise StudioError("no images to review", hint="pass image files or a folder of PNG/JPEG/WebP files")
    return found


def register(app: typer.Typer) -> None:
    @app.command("review")
    def review_cmd(
        paths: Annotated[list[Path], typer.Argument(help="A run id, or image files and folders.")],
        declared: Annotated[
            Path | None,
            typer.Option(
                "--declared",
                help='JSON {"image.png": {"skin_tone": "deep", "age": "60s", ...}}: what the brief asked for.',
                exists=True,
            ),
        ] = None,
        target_mix: Annotated[
            list[str] | None,
            typer.Option("--target-mix", help="ATTRIBUTE=value:share,... (repeatable) or a JSON file."),
        ] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Representation review: declared mix vs target, measured face exposure by ITA° bin.

        Attributes are only ever the declared ones; nothing about a person is inferred from
        pixels. Exits 1 when the review raises a flag.
        """
        from rich.markup import escape
        from rich.table import Table

        from ..review import DeclaredAttributes, ReviewItem, load_declared, review_set

        if len(paths) == 1 and not paths[0].exists():  # a run id: images and declared attributes from the ledger
            from ..ledger import open_ledger
            from ..review import run_items

            with open_ledger(studio(home)) as ledger:
                items = run_items(ledger, str(paths[0]))
        else:
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                raise StudioError(f"no such file or run: {', '.join(missing)}", hint="pass a run id or image files")
            images = _images(paths)
            declared_map = load_declared(declared) if declared else {}
            items = [
                ReviewItem(path=str(p), declared=declared_map.get(p.name, DeclaredAttributes())) for p in images
            ]
        report = review_set(items, parse_target_mix(target_mix or []))
        if json_out:
            print_json({**report.model_dump(mode="json"), "flagged": report.flagged})
        else:
            table = Table(title="Face exposure (measured on face skin)")
            for col in ("image", "declared tone", "L*", "ITA°", "ITA bin", "crushed", "clipped", "verdict"):
                table.add_column(col, overflow="fold")
            for img in report.images:
                e = img.exposure
                table.add_row(
                    escape(Path(img.path).name),
                    escape(img.declared.skin_tone or ""),
                    f"{e.median_l:.0f}" if e.median_l is not None else "",
                    f"{e.ita:.0f}" if e.ita is not None else "",
                    e.ita_bin or "",
                    f"{e.clipped_shadows:.1%}" if e.clipped_shadows is not None else "",
                    f"{e.clipped_highlights:.1%}" if e.clipped_highlights is not None else "",
                    img.verdict
                    if img.verdict == "ok"
                    else f"[yellow]{img.verdict}[/]: " + "; ".join(img.reasons),
                )
            console.print(table)
            if any(row.target is not None or row.count for row in report.mix):
                mix = Table(title="Declared mix (from the brief)")
                for col in ("attribute", "value", "count", "share", "target"):
                    mix.add_column(col)
                for row in report.mix:
                    target = f"{row.target:.0%}" if row.target is not None else ""
                    style = "[red]" if row.flagged else ""
                    mix.add_row(
                        row.attribute, escape(row.value), str(row.count), f"{style}{row.share:.0%}", target
                    )
                console.print(mix)
            for flag in report.flags:
                console.print(f"[bold red]flag:[/] {escape(flag)}", highlight=False)
            if not report.flags:
                console.print("[green]no flags[/]")
            console.print(f"[dim]{report.method_note}[/]", highlight=False)
        if report.flagged:
            raise typer.Exit(1)
