"""Every option and argument the commands share, each with its parser, limits and help in one place.

Values are checked when the command line is parsed, before the studio is opened or a run is
recorded, so a bad value never leaves half a run behind. Each check raises typer's
`BadParameter`, which `run_cli` prints as "error: --seed: ..." plus the fix.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ..seeds import EXPLORE_DEFAULT, EXPLORE_MAX, EXPLORE_MIN, EXPLORE_RECOMMENDED, SEED_MAX, SEED_MIN

__all__ = [
    "BriefArg", "BudgetOption", "ModelsOption", "PortOption", "ProviderOption", "RunArg", "SandboxOption",
    "SeedsOption", "TokenOption", "WeightsOption", "check_finite", "check_id", "check_token",
    "image_file", "input_file", "json_file", "pem_file", "seed_option", "text_file",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")
TOKEN_MIN = 12

# --- value checks (pure: value in, value out or BadParameter) --------------------------------


def check_finite(value: float | None, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float | None:
    """A real number in range: nan and inf are refused (nan would switch a budget off)."""
    if value is None:
        return None
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number; give a finite value")
    if low is not None and (value < low or (low_open and value == low)):
        raise typer.BadParameter(f"{value:g} is below the {'exclusive ' if low_open else ''}minimum {low:g}")
    if high is not None and value > high:
        raise typer.BadParameter(f"{value:g} is above the maximum {high:g}")
    return value


def check_id(value: str | None, what: str = "id") -> str | None:
    """A run or image id (or a unique prefix of one): letters, digits, '_' and '-' only.

    An empty string or a wildcard such as '%' would otherwise match every run in the ledger.
    """
    if value is None:
        return None
    if not _ID.fullmatch(value):
        raise typer.BadParameter(f"'{value}' is not a {what}; copy one from 'portrait log' "
                                 "(letters, digits, '_' and '-'; a unique prefix is enough)")
    return value


def check_token(value: str | None) -> str | None:
    """The web studio's access token: it travels in a URL, so URL-safe ASCII, long enough to guard."""
    if value is None:
        return None
    if not _TOKEN.fullmatch(value):
        raise typer.BadParameter("use only letters, digits and . _ ~ - (the token goes into a URL)")
    if len(value) < TOKEN_MIN:
        raise typer.BadParameter(f"{len(value)} characters is too short to guard the studio; use at least {TOKEN_MIN}")
    return value


def _finite_cb(low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    def cb(value: float | None) -> float | None:
        return check_finite(value, low=low, high=high, low_open=low_open)

    return cb


# --- input files ---------------------------------------------------------------------------


def _readable(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except IsADirectoryError:
        raise typer.BadParameter(f"'{path}' is a folder, not a file") from None
    except OSError as exc:
        raise typer.BadParameter(f"'{path}' cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise typer.BadParameter(f"'{path}' is empty")
    return head


def text_file(path: Path | None) -> Path | None:
    """A UTF-8 text file (a brief, a shot list, a JSON or PEM file): not empty, not binary, not Latin-1."""
    if path is None:
        return None
    head = _readable(path)
    if b"\x00" in head:
        raise typer.BadParameter(f"'{path}' is a binary file, not text")
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"'{path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if not path.read_text(encoding="utf-8").strip():
        raise typer.BadParameter(f"'{path}' has only blank lines")
    return path


def json_file(path: Path | None) -> Path | None:
    if text_file(path) is None:
        return None
    assert path is not None
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"'{path}' is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return path


def pem_file(path: Path | None) -> Path | None:
    if text_file(path) is None:
        return None
    assert path is not None
    if "-----BEGIN " not in path.read_text(encoding="utf-8"):
        raise typer.BadParameter(f"'{path}' holds no PEM certificate (no '-----BEGIN' line)")
    return path


def image_file(path: Path | None) -> Path | None:
    """A picture the studio can open: checked from its header (cheap), bombs and non-images refused."""
    if path is None:
        return None
    _readable(path)
    from ..errors import StudioError
    from ..imaging import image_size

    try:
        image_size(path)
    except StudioError as exc:
        raise typer.BadParameter(exc.message) from None
    return path


def image_files(paths: list[Path] | None) -> list[Path] | None:
    return None if paths is None else [p for p in paths if image_file(p) is not None]


def input_file(path: Path | None) -> Path | None:
    """Any input file (weights, certificates handled above): it exists, is a file, is readable, is not empty."""
    if path is not None:
        _readable(path)
    return path


def _input(help: str, check: Any, metavar: str, *, option: str | None = None, **kw: Any) -> Any:
    common = dict(help=help, exists=True, dir_okay=False, readable=True, metavar=metavar, callback=check, **kw)
    return typer.Option(option, **common) if option else typer.Argument(**common)


# --- shared options ---------------------------------------------------------------------------


def seed_option(help: str = "Lock one seed.") -> Any:
    return typer.Option("--seed", help=f"{help} ({SEED_MIN}–{SEED_MAX}.)", min=SEED_MIN, max=SEED_MAX)


BriefArg = Annotated[Path, _input("Brief YAML file.", text_file, "BRIEF")]
ImageArg = Annotated[Path, _input("The image file.", image_file, "IMAGE")]
ImagesArg = Annotated[list[Path], _input("Image files.", image_files, "IMAGE")]
RunArg = Annotated[str, typer.Argument(help="Run id or a unique prefix of one (see 'portrait log').",
                                       metavar="RUN", callback=lambda v: check_id(v, "run id"))]
ModelsOption = Annotated[list[str], typer.Option("--model", "-m", help="Catalog model id (see 'portrait models'); "
                                                 "repeat for several.")]
SeedsOption = Annotated[int | None, typer.Option(
    "--seeds", min=EXPLORE_MIN, max=EXPLORE_MAX,
    help=f"Explore N random seeds ({EXPLORE_MIN}–{EXPLORE_MAX}; default {EXPLORE_DEFAULT}; "
         f"{EXPLORE_RECOMMENDED[0]}–{EXPLORE_RECOMMENDED[1]} is the usual range).")]
BudgetOption = Annotated[float | None, typer.Option(
    "--budget", help="Most this command may spend, in USD (default: config.toml's default_budget_usd).",
    callback=_finite_cb(low=0))]
SandboxChoice = Literal["auto", "always", "never"]
SandboxOption = Annotated[SandboxChoice, typer.Option(
    "--sandbox", help="auto: the provider's sandbox when no API key is set; always; never (needs a key).")]
ProviderOption = Annotated[
    Literal["bfl", "fal", "replicate", "local"] | None,
    typer.Option("--provider", help="Where the model runs (default: the model's first route).")]
WeightsOption = Annotated[str | None, typer.Option("--weights", help="local: a diffusers folder or HF repo id.")]
PortOption = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0 picks a free one).")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", help=f"Access token ({TOKEN_MIN}+ URL-safe characters); required off loopback.",
    envvar="PORTRAIT_WEB_TOKEN", callback=check_token)]
OutDirOption = Annotated[Path | None, typer.Option("--out", help="Folder for the run's files.", file_okay=False,
                                                   metavar="FOLDER")]


def finite(low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    """A callback refusing nan/inf and values out of range, for float options."""
    return _finite_cb(low, high, low_open)


def input_option(name: str, help: str, check: Any = input_file, metavar: str = "FILE", **kw: Any) -> Any:
    return _input(help, check, metavar, option=name, **kw)


def input_argument(help: str, check: Any = input_file, metavar: str = "FILE", **kw: Any) -> Any:
    return _input(help, check, metavar, **kw)
