"""`portrait keys set` and `portrait audit`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import LedgerError
from ..ledger import Ledger
from ._common import HomeOption, console, studio


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(help="API keys (stored in the studio folder, never in the ledger).", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @keys_app.command("set")
    def set_key(
        provider: Annotated[str, typer.Argument(help="bfl, fal or replicate.")],
        value: Annotated[str, typer.Option(prompt=True, hide_input=True, help="The key (asked for if omitted).")],
        home: HomeOption = None,
    ) -> None:
        """Store an API key in keys.json (mode 600)."""
        s = studio(home)
        s.set_key(provider, value)
        console.print(f"stored the {provider} key in {s.keys_path}")

    @app.command("audit")
    def audit(
        run: Annotated[str, typer.Argument(help="Run id.")],
        out: Annotated[Path, typer.Option("--out", help="Zip file to write.")] = Path("audit-bundle.zip"),
        home: HomeOption = None,
    ) -> None:
        """Write an audit bundle: images, a record per image, CSV, summary page — no secrets."""
        from ..audit import build_audit_bundle
        from ..engine import Engine
        from ..finishing.lineage import LabelSettings

        s = studio(home)
        try:  # repair missing or damaged delivered copies first, so every image ships labelled
            with Ledger(s.ledger_path) as ledger:
                row = ledger.run(run)
                engine = Engine(ledger=ledger, images_dir=s.images_dir, runs_dir=s.runs_dir, providers={},
                                labels=LabelSettings.from_studio(s), secrets=s.secrets())
                for image in ledger.images(run_id=row.id, limit=100_000):
                    if image.operation == "generate" and image.out_path:
                        engine.deliver(image)
        except (LedgerError, OSError):
            pass  # a read-only studio: ship what is there (the summary says what is labelled)
        with Ledger(s.ledger_path, read_only=True) as ledger:
            path = build_audit_bundle(ledger, ledger.run(run).id, out, secrets=s.secrets())
        console.print(f"wrote {path}")
