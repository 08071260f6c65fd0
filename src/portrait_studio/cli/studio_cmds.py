"""`portrait keys set` and `portrait audit`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import KEY_ENV_VARS
from ..errors import LedgerError
from ..ledger import open_ledger
from ._common import HomeOption, JsonOption, console, escape, new_app, print_json, studio
from ._options import RunArg, check_id


def _provider(value: str) -> str:
    if value not in KEY_ENV_VARS:
        raise typer.BadParameter(f"'{value}' takes no API key here; choose one of {', '.join(KEY_ENV_VARS)}")
    return value


def _key(value: str) -> str:
    """A key is one line of visible ASCII: a pasted newline or a non-ASCII quote would be sent as is."""
    value = value.strip()
    if not value:
        raise typer.BadParameter("the key is empty")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise typer.BadParameter("the key has spaces or non-ASCII characters; paste it exactly as the provider shows it")
    return value


def register(app: typer.Typer) -> None:
    keys_app = new_app("API keys (stored in the studio folder, never in the ledger).")
    app.add_typer(keys_app, name="keys")

    @keys_app.command("set")
    def set_key(
        provider: Annotated[str, typer.Argument(help=f"{', '.join(KEY_ENV_VARS)}.", metavar="PROVIDER",
                                                callback=_provider)],
        value: Annotated[str, typer.Option("--value", prompt="API key", hide_input=True, callback=_key,
                                           help="The key (asked for if omitted, without echo).")],
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Store an API key in keys.json (mode 600); the environment variable still wins."""
        s = studio(home)
        s.set_key(provider, value)
        if json_out:
            print_json({"provider": provider, "stored_in": str(s.keys_path), "env_var": KEY_ENV_VARS[provider]})
            return
        console.print(f"stored the {provider} key in {escape(str(s.keys_path))} "
                      f"({KEY_ENV_VARS[provider]}, when set, takes precedence)", highlight=False)

    @app.command("audit")
    def audit(
        run: RunArg,
        out: Annotated[Path, typer.Option("--out", help="Zip file to write.", dir_okay=False,
                                          metavar="ZIP")] = Path("audit-bundle.zip"),
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Write an audit bundle: images, a record per image, CSV, summary page — no secrets."""
        from ..audit import build_audit_bundle
        from ..engine import Engine
        from ..finishing.lineage import LabelSettings

        check_id(run)
        s = studio(home)
        try:  # repair missing or damaged delivered copies first, so every image ships labelled
            with open_ledger(s) as ledger:
                row = ledger.run(run)
                engine = Engine(ledger=ledger, images_dir=s.images_dir, runs_dir=s.runs_dir, providers={},
                                labels=LabelSettings.from_studio(s), secrets=s.secrets())
                for image in ledger.images(run_id=row.id, limit=100_000):
                    if image.operation == "generate" and image.out_path:
                        engine.deliver(image)
        except (LedgerError, OSError):
            pass  # a read-only studio: ship what is there (the summary says what is labelled)
        with open_ledger(s, read_only=True) as ledger:
            run_id = ledger.run(run).id
            path = build_audit_bundle(ledger, run_id, out, secrets=s.secrets())
        if json_out:
            print_json({"run_id": run_id, "bundle": str(path)})
            return
        console.print(f"wrote {escape(str(path))}", highlight=False)
