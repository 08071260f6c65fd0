"""`portrait review`: declared mix against the target, and face exposure by skin-tone group."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from ..errors import StudioError, UsageError
from ._common import HomeOption, JsonOption, console, plain, print_json, studio
from ._options import check_id, image_file, input_option, json_file
from ._tables import new_table

__all__ = ["parse_target_mix", "register"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def _share(value: object) -> float:
    share = float(value)  # type: ignore[arg-type]
    if not math.isfinite(share) or share < 0:
        raise ValueError(f"share {value!r} is not a number >= 0")
    return share


def parse_target_mix(values: list[str]) -> dict[str, dict[str, float]]:
    """`skin_tone=light:1,deep:1` (repeatable) or a JSON file of the same shape."""
    mix: dict[str, dict[str, float]] = {}
    for value in values:
        if value.endswith(".json") and Path(value).is_file():
            try:
                data = json.loads(Path(value).read_text(encoding="utf-8"))
                for attr, shares in data.items():
                    mix.setdefault(str(attr), {}).update({str(k): _share(v) for k, v in shares.items()})
            except (ValueError, AttributeError, TypeError, UnicodeDecodeError) as exc:
                raise UsageError(f"'{value}' is not a JSON object of {{attribute: {{value: share}}}} ({exc})",
                                 field="--target-mix", hint='e.g. {"skin_tone": {"light": 1, "deep": 1}}') from None
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
                    _share(share) if colon else 1.0
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
        paths: Annotated[list[Path], typer.Argument(help="A run id, or image files and folders.", metavar="RUN|IMAGE")],
        declared: Annotated[
            Path | None,
            input_option("--declared", 'JSON {"image.png": {"skin_tone": "deep", "age": "60s", ...}}: what the brief '
                         "asked for.", json_file, "JSON"),
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
        from ..review import DeclaredAttributes, ReviewItem, load_declared, review_set

        if len(paths) == 1 and not paths[0].exists():  # a run id: images and declared attributes from the ledger
            from ..ledger import open_ledger
            from ..review import run_items

            run = check_id(str(paths[0]), "run id, image file or folder")
            with open_ledger(studio(home)) as ledger:
                items = run_items(ledger, ledger.run(run or "").id)
        else:
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                raise UsageError(f"no such file or run: {', '.join(missing)}", field="RUN|IMAGE",
                                 hint="pass a run id or image files")
            images = [p for p in _images(paths) if image_file(p)]
            declared_map = load_declared(declared) if declared else {}
            items = [
                ReviewItem(path=str(p), declared=declared_map.get(p.name, DeclaredAttributes())) for p in images
            ]
        from ..quiet import native_quiet
        from ._run import debug

        targets = parse_target_mix(target_mix or [])
        with native_quiet(enabled=not debug()):
            report = review_set(items, targets)
        if json_out:
            print_json({**report.model_dump(mode="json"), "flagged": report.flagged})
        else:
            table = new_table(("image", {"ratio": 3}), ("declared tone", {"ratio": 2}), ("L*", {"justify": "right"}),
                              ("ITA° · bin", {"ratio": 2}), ("crushed · clipped", {}), ("verdict", {"ratio": 3}),
                              title="Face exposure (measured on face skin)")
            for img in report.images:
                e = img.exposure
                ita = f"{e.ita:.0f}" if e.ita is not None else ""
                table.add_row(
                    plain(Path(img.path).name),
                    plain(img.declared.skin_tone or ""),
                    f"{e.median_l:.0f}" if e.median_l is not None else "",
                    plain(f"{ita}\n{e.ita_bin or ''}"),
                    plain(f"{e.clipped_shadows:.1%}" if e.clipped_shadows is not None else "")
                    + plain(f"\n{e.clipped_highlights:.1%}" if e.clipped_highlights is not None else ""),
                    plain(img.verdict) if img.verdict == "ok"
                    else plain(img.verdict, "yellow") + plain(": " + "; ".join(img.reasons)),
                )
            console.print(table)
            if any(row.target is not None or row.count for row in report.mix):
                mix = new_table(("attribute", {}), ("value", {"ratio": 2}), ("count", {"justify": "right"}),
                                ("share", {"justify": "right"}), ("target", {"justify": "right"}),
                                title="Declared mix (from the brief)")
                for row in report.mix:
                    target = f"{row.target:.0%}" if row.target is not None else ""
                    mix.add_row(plain(row.attribute), plain(row.value), str(row.count),
                                plain(f"{row.share:.0%}", "red" if row.flagged else ""), target)
                console.print(mix)
            for flag in report.flags:
                console.print("[bold red]flag:[/]", plain(flag), highlight=False)
            if not report.flags:
                console.print("[green]no flags[/]")
            console.print(plain(report.method_note, "dim"))
        if report.flagged:
            raise typer.Exit(1)
