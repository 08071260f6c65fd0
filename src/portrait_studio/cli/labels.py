"""`portrait verify` and `portrait label`: read back or write the AI labels of image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import HomeOption, JsonOption, console, plain, print_json, studio
from ._options import finite, image_file, image_files, input_argument, input_option, pem_file, seed_option
from ._tables import new_table

__all__ = ["register"]

_SHORT_SOURCE = {
    "trainedAlgorithmicMedia": "AI-generated",
    "compositeWithTrainedAlgorithmicMedia": "AI composite",
}
_STATUS_STYLE = {"valid": "green", "untrusted": "yellow", "invalid": "bold red", "missing": "dim"}


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        images: Annotated[list[Path], input_argument("Image files to check.", image_files, "IMAGE")],
        trust: Annotated[
            Path | None,
            input_option("--trust", "CA certificate(s) (PEM) you trust; default: config [c2pa] trust_anchors.",
                         pem_file, "PEM"),
        ] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Read back every AI label and the C2PA status (valid / untrusted / invalid / missing).

        Exits 1 when any image is unlabelled or its C2PA manifest is invalid.
        """
        from ..labels import verify

        anchors_path = trust
        if anchors_path is None:
            configured = studio(home).config.c2pa.trust_anchors
            anchors_path = Path(configured).expanduser() if configured else None
        if anchors_path is not None and trust is None and not anchors_path.is_file():
            from ..errors import UsageError

            raise UsageError(f"the trust anchors file '{anchors_path}' (config [c2pa] trust_anchors) does not exist",
                             field="trust_anchors", hint="fix config.toml, or pass --trust CA.pem")
        anchors = anchors_path.read_text(encoding="utf-8") if anchors_path else None
        reports = [verify(path, anchors) for path in images]
        if json_out:
            print_json([r.summary() for r in reports])
        else:
            table = new_table(("image", {"ratio": 2}), ("AI label · caption", {"ratio": 3}),
                              ("C2PA · signer", {"ratio": 2}), ("problems", {"ratio": 3}))
            for r in reports:
                source = (r.digital_source_type or "").rsplit("/", 1)[-1]
                c2pa: str = r.c2pa.status
                if r.c2pa.ingredients:
                    c2pa += f" (+{len(r.c2pa.ingredients)} ingredient)"
                label = plain(_SHORT_SOURCE.get(source, source)) if source else plain("none", "red")
                caption = plain(f"\n{r.caption}") if r.caption else plain("\nno caption", "red")
                table.add_row(
                    plain(Path(r.path).name),
                    label + caption,
                    plain(c2pa, _STATUS_STYLE[r.c2pa.status]) + plain(f"\n{r.c2pa.signer or ''}"),
                    plain("; ".join(r.problems)),
                )
            console.print(table)
        if not all(r.ok for r in reports):
            raise typer.Exit(1)

    @app.command("label")
    def label_cmd(
        image: Annotated[Path, input_argument("Image file to label in place.", image_file, "IMAGE")],
        model: Annotated[str, typer.Option("--model", help="Catalog model id, e.g. flux-1.1-pro-ultra.")],
        prompt: Annotated[str, typer.Option("--prompt", help="The prompt the image was made from.")],
        negative: Annotated[
            str | None, typer.Option("--negative", help="Negative prompt / avoid list.")
        ] = None,
        seed: Annotated[int | None, seed_option("The seed it was made with.")] = None,
        steps: Annotated[int | None, typer.Option("--steps", min=1, max=1000, help="Inference steps it was made with.")] = None,
        guidance: Annotated[float | None, typer.Option("--guidance", callback=finite(0.0, 100.0),
                                                       help="Guidance it was made with.")] = None,
        provider: Annotated[str | None, typer.Option("--provider", help="Where it was made (bfl, fal, ...).")] = None,
        composite: Annotated[
            bool, typer.Option("--composite", help="The image was fixed, upscaled or composited.")
        ] = False,
        edit: Annotated[str | None, typer.Option("--edit", help="What the fix/upscale did.")] = None,
        parent: Annotated[
            Path | None,
            input_option("--parent", "The image it was made from (kept as a C2PA ingredient).", image_file, "IMAGE"),
        ] = None,
        sign: Annotated[
            bool, typer.Option("--sign/--no-sign", help="Sign with the configured C2PA key.")
        ] = True,
        sidecar: Annotated[bool, typer.Option("--sidecar/--no-sidecar", help="Write <image>.json.")] = True,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Label an existing image file (XMP/IPTC, parameters, caption, C2PA signed last)."""
        import hashlib

        from rich.markup import escape

        from ..labels import LabelInfo, label_image

        st = studio(home)
        cfg = st.config
        info = LabelInfo(
            model=model,
            provider=provider,
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            is_composite=composite or parent is not None,
            edit=edit,
            parent_sha256=hashlib.sha256(parent.read_bytes()).hexdigest() if parent else None,
            creator=cfg.creator,
            credit=cfg.credit,
        )
        record = label_image(
            image,
            info,
            cfg.c2pa if sign else None,
            ingredient_from=parent,
            sidecar=sidecar,
            secrets=st.secrets(),
        )
        if json_out:
            print_json(record.model_dump(mode="json"))
            return
        console.print(f"labelled [bold]{escape(str(image))}[/]: {escape(record.caption)}", highlight=False)
        console.print(f"  fields: {escape(', '.join(record.fields))}", highlight=False)
        if record.c2pa:
            parent_note = f", parent ingredient {escape(record.c2pa.parent)}" if record.c2pa.parent else ""
            console.print(f"  C2PA: {' + '.join(record.c2pa.actions)}{parent_note}", highlight=False)
        for warning in record.warnings:
            console.print(f"  [yellow]note:[/] {escape(warning)}", highlight=False)
