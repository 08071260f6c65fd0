"""`portrait check IMAGE...`: the final checklist, readable, as JSON, or drawn on the image."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CheckError
from ._common import JsonOption, console, plain, print_json
from ._options import finite, image_files, input_argument, input_option, text_file
from ._progress import progress_bars
from ._run import debug
from ._tables import new_table

__all__ = ["register"]

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_applicable": "dim"}
_COLOUR = {"pass": (40, 200, 40), "warn": (255, 170, 0), "fail": (230, 30, 30), "not_applicable": (150, 150, 150)}


def _parse_target(target: str | None) -> tuple[int | None, int | None]:
    if not target:
        return None, None
    try:
        w, h = (int(v) for v in target.lower().replace("×", "x").split("x"))
        if not (0 < w <= 20_000 and 0 < h <= 20_000):
            raise ValueError
        return w, h
    except ValueError:
        raise CheckError(f"--target must look like 1024x1536, not {target!r}", hint="use WIDTHxHEIGHT") from None


def _target_cb(value: str | None) -> str | None:
    try:
        _parse_target(value)
    except CheckError as exc:
        raise typer.BadParameter(exc.message.removeprefix("--target ")) from None
    return value


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        images: Annotated[list[Path], input_argument("Image files to check.", image_files, "IMAGE")],
        brief: Annotated[Path | None, input_option("--brief", "Brief YAML: lighting, teeth and hands to expect.",
                                                   text_file, "BRIEF")] = None,
        target: Annotated[str | None, typer.Option("--target", help="Export size WxH the image must have.",
                                                   callback=_target_cb)] = None,
        upscale: Annotated[float | None, typer.Option("--upscale", help="Upscale factor the finishing step applied.",
                                                      callback=finite(low=1.0, high=8.0))] = None,
        require_label: Annotated[bool, typer.Option("--require-label", help="Fail when the AI label or record is missing.")] = False,
        annotate: Annotated[Path | None, typer.Option("--annotate", help="Write annotated copies into this folder.",
                                                      file_okay=False, metavar="FOLDER")] = None,
        json_out: JsonOption = False,
    ) -> None:
        """Run the final checklist (eyes, skin, mouth, hands, lighting, background, export) on each image."""
        from ..checks import CheckContext, run_checklist, warm_up
        from ..imaging import image_size

        tw, th = _parse_target(target)
        fields: dict[str, Any] = {"target_width": tw, "target_height": th, "expected_upscale": upscale,
                                  "require_label": require_label}
        if brief is not None:
            from ..brief import load_brief  # type: ignore[import-not-found, unused-ignore]

            context = CheckContext.from_brief(load_brief(brief), **fields)
        else:
            context = CheckContext(**fields)
        from ..analysis import analyze
        from ..quiet import native_quiet

        for path in images:
            image_size(path)  # missing files, folders, non-images and bombs: a clear error naming the file
        # the models load in a thread: the OCR's while the first photo's faces are analysed, not after
        warm_up(ocr_engines=1)

        results = []
        with progress_bars(quiet=json_out or len(images) < 2) as bars:
            bar = bars.bar("checklist", len(images), unit="images")
            for path in images:
                with native_quiet(enabled=not debug()):  # mediapipe/TFLite set-up chatter on fd 2
                    analysis = analyze(path)
                    checklist = run_checklist(path, context, analysis=analysis)
                results.append(checklist)
                if annotate is not None:
                    annotate.mkdir(parents=True, exist_ok=True)
                    out = annotate / f"{path.stem}.checked.png"
                    draw_annotations(analysis, checklist).save(out)
                if not json_out:
                    console.print(_render(path, checklist, annotate))
                bar.advance()
        if json_out:
            data = [c.model_dump() for c in results]
            print_json(data if len(data) > 1 else data[0])
        if any(c.overall == "fail" for c in results):
            raise typer.Exit(1)


def _render(path: Path, checklist: Any, annotate: Path | None) -> Any:
    from rich.console import Group

    table = new_table(("item", {}), ("status", {}), ("measured\n(limit)", {"justify": "right"}),
                      ("why", {"ratio": 1}), title=f"{path.name}  {checklist.width}×{checklist.height}")
    for it in checklist.items:
        value = "" if it.measured is None else f"{it.measured:.3g}"
        limit = "" if it.threshold is None else f"({it.threshold:.3g})"
        table.add_row(plain(it.item), plain(it.status.replace("not_applicable", "n/a"), _STYLE[it.status]),
                      plain(f"{value}\n{limit}".strip()), plain(it.explanation))
    summary = plain("overall ") + plain(checklist.overall, _STYLE[checklist.overall]) + plain(
        f"  score {checklist.score:g}  ({checklist.seconds:.2f} s)" + (f"  annotated -> {annotate}" if annotate else ""))
    return Group(table, summary, plain(str(path), "dim"))


def draw_annotations(analysis: Any, checklist: Any) -> Any:
    """The image with face mesh points, hand skeletons and each measured region (red = failed)."""
    import cv2
    import numpy as np
    from PIL import Image

    from ..analysis import HAND_FINGERS

    img = analysis.rgb.copy()
    h, w = analysis.shape
    t = max(1, round(max(h, w) / 600))
    for face in analysis.faces:
        cv2.rectangle(img, face.box[:2], face.box[2:], (0, 200, 255), t)
        if face.landmarks is not None:
            for x, y in face.landmarks[:, :2].astype(int)[::2]:
                cv2.circle(img, (int(x), int(y)), max(1, t // 2), (0, 255, 255), -1)
    for hand in analysis.hands:
        p = hand.landmarks[:, :2].astype(int)
        for chain in HAND_FINGERS.values():
            pts = [p[0], *[p[i] for i in chain]]
            for a, b in itertools.pairwise(pts):
                cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (0, 255, 120), t)
    order = {"not_applicable": 0, "pass": 1, "warn": 2, "fail": 3}
    for it in sorted(checklist.items, key=lambda i: order[i.status]):
        if it.region is None or it.status == "not_applicable":
            continue
        x0, y0, x1, y1 = it.region
        col = _COLOUR[it.status]
        cv2.rectangle(img, (x0, y0), (x1, y1), col, t if it.status == "pass" else 2 * t)
        if it.status != "pass":
            cv2.putText(img, it.item, (x0 + 2, max(12 * t, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, col, t, cv2.LINE_AA)
    return Image.fromarray(np.ascontiguousarray(img))
