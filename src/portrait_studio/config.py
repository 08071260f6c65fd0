"""The studio folder: ledger, images, config and keys.

Read once at the edge (CLI, web, tests) and passed down as a `Studio`; library code
never reads the environment on its own.

    <home>/
      config.toml     creator, credit, default budget, C2PA certificate and key, provider options;
                      for a team studio: database (a postgresql:// URL) or server (its web
                      address, for `portrait remote`), and token (your API token)
      keys.json       API keys (never logged, never written to the ledger or image metadata)
      ledger.db       the SQLite ledger (unless `database` names a shared one)
      images/ab/<sha256>.<ext>   content-addressed images
      runs/<run id>/  a folder per run: images, contact sheet, run.json
      latency.json    how long each hosted model took lately (per provider and host; the sandbox
                      apart), so a new command's first poll lands when its tasks should be done

`PORTRAIT_STUDIO_HOME` (or `--home`) moves the folder; the default is `~/.portrait-studio`.
`PORTRAIT_DATABASE`, `PORTRAIT_TOKEN` and `PORTRAIT_SERVER` override `database`, `token` and
`server` (scripts, CI).
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import NotConfigured, StudioError, UsageError
from .files import atomic_write_text

__all__ = [
    "check_out_dir",
    "DATABASE_ENV", "HOME_ENV", "KEY_ENV_VARS", "MAX_CONFIG_BYTES", "SERVER_ENV", "TOKEN_ENV", "C2paConfig", "Studio",
    "StudioConfig", "read_config", "read_keys", "resolve_home",
]

MAX_CONFIG_BYTES = 64 * 1024

HOME_ENV = "PORTRAIT_STUDIO_HOME"
DATABASE_ENV = "PORTRAIT_DATABASE"
TOKEN_ENV = "PORTRAIT_TOKEN"
SERVER_ENV = "PORTRAIT_SERVER"

KEY_ENV_VARS = {
    "bfl": "BFL_API_KEY",
    "fal": "FAL_KEY",
    "replicate": "REPLICATE_API_TOKEN",
}


class C2paConfig(BaseModel):
    """The user's C2PA signing credentials (PEM files). Leaf + CA chain, ES256 by default."""

    model_config = ConfigDict(extra="forbid")

    cert_chain: str | None = None
    private_key: str | None = None
    algorithm: str = "es256"
    trust_anchors: str | None = None


class StudioConfig(BaseModel):
    """config.toml, validated."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    creator: str | None = None
    credit: str | None = None
    default_budget_usd: float | None = Field(default=None, ge=0)
    bfl_host: str = "https://api.bfl.ai"
    c2pa: C2paConfig = Field(default_factory=C2paConfig)
    providers: dict[str, dict[str, object]] = Field(default_factory=dict)
    database: str | None = None
    """Where the ledger lives when not in ledger.db: a postgresql:// URL shared by a team."""
    token: str | None = None
    """Your API token for a team studio ('portrait team token create'): who the CLI acts as."""
    server: str | None = None
    """A team studio's web address, for `portrait remote` (when you reach its server, not its database)."""


def resolve_home(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser()
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    return Path.home() / ".portrait-studio"


CONFIG_FIX = "fix or delete the config file ('portrait doctor' checks it)"
KEYS_FIX = "run 'portrait doctor --repair' (moves it aside), then 'portrait keys set PROVIDER'"


def _read_small(path: Path, what: str, fix: str) -> str | None:
    """A small text file of the studio, None if absent; a StudioError naming it if unreadable."""
    try:
        if path.is_dir():
            raise StudioError(f"{path}: the {what} is a folder", hint=fix)
        if not path.exists():
            return None
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise StudioError(f"{path}: the {what} is larger than {MAX_CONFIG_BYTES:,} bytes", hint=fix)
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise StudioError(f"{path}: the {what} is not UTF-8 text", hint=fix) from None
    except OSError as exc:
        raise StudioError(f"{path}: cannot read the {what} ({exc.strerror})", hint=fix) from None


def read_config(path: Path) -> StudioConfig:
    """config.toml, validated (defaults when absent); a StudioError naming the file and field."""
    text = _read_small(path, "config", CONFIG_FIX)
    if text is None:
        return StudioConfig()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudioError(f"{path}: not valid TOML: {exc}", hint=CONFIG_FIX) from None
    try:
        return StudioConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        more = len(exc.errors()) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise StudioError(f"{path}: field '{field}': {first['msg']}{extra}", hint=CONFIG_FIX) from None


def read_keys(path: Path) -> dict[str, str]:
    """keys.json as {provider: key} ({} when absent); a StudioError with the way out if it is damaged."""
    text = _read_small(path, "keys file", KEYS_FIX)
    if text is None:
        return {}
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StudioError(f"{path}: the keys file is damaged (line {exc.lineno}: {exc.msg})", hint=KEYS_FIX) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise StudioError(f"{path}: the keys file must map provider names to key strings", hint=KEYS_FIX)
    return {str(k): v for k, v in data.items() if v}


def check_out_dir(home: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """`path` resolved, if a run may write its files there (`--out`); else a StudioError.

    Refused: the studio folder itself, any folder above it (a run folder is served by the web
    studio, and must never hold the keys or the ledger) and any folder inside it except under
    runs/ (images/, thumbs/, exports/ … belong to the studio).
    """
    out = Path(path).expanduser().resolve()
    root = Path(home).expanduser().resolve()
    if root.is_relative_to(out):
        raise StudioError(f"--out {path} {'is' if out == root else 'contains'} the studio folder {root}",
                          hint="write the run to a folder of its own outside the studio, e.g. --out ./portraits")
    if out.is_relative_to(root) and not out.is_relative_to(root / "runs"):
        raise StudioError(f"--out {path} is inside the studio folder {root}",
                          hint=f"leave --out out (runs go to {root / 'runs'}) or choose a folder outside the studio")
    return out


class Studio:
    """A studio folder, its config and its keys. Cheap to create; nothing heavy is loaded.

    Opening a studio creates nothing: read-only commands work on a read-only (or not yet
    existing) folder. Writers create what they need (`ensure_home`).
    """

    def __init__(self, home: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
                 *, database: str | None = None) -> None:
        self.home = Path(home)
        if self.home.exists() and not self.home.is_dir():
            raise StudioError(f"the studio folder {self.home} is a file", hint="point --home / PORTRAIT_STUDIO_HOME at a folder")
        self._environ = dict(os.environ if environ is None else environ)
        self.config = self._load_config()
        self._database = database

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Studio:
        return cls(resolve_home(home))

    def ensure_home(self) -> Path:
        """Create the studio folder (for commands that write); a clear error when it cannot be."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioError(f"cannot create the studio folder {self.home}: {exc.strerror}",
                              hint="check the path and its permissions (--home / PORTRAIT_STUDIO_HOME)") from None
        return self.home

    @property
    def database(self) -> str | None:
        """The shared database, if any: `--database`, else $PORTRAIT_DATABASE, else config.toml's `database`."""
        return self._database or self._environ.get(DATABASE_ENV) or self.config.database or None

    @property
    def ledger_url(self) -> str:
        """Where the ledger lives: the shared database's URL, else the path of <home>/ledger.db."""
        return self.database or str(self.home / "ledger.db")

    @property
    def ledger_path(self) -> Path | str:
        """Where the ledger lives, for `Ledger(...)`: <home>/ledger.db, or the shared database's URL."""
        return self.database or self.home / "ledger.db"

    @property
    def server(self) -> str | None:
        """A team studio's web address for `portrait remote` ($PORTRAIT_SERVER, else config.toml's `server`)."""
        return self._environ.get(SERVER_ENV) or self.config.server or None

    @property
    def token(self) -> str | None:
        """The API token the CLI acts with in a team studio ($PORTRAIT_TOKEN, else config.toml's `token`)."""
        return self._environ.get(TOKEN_ENV) or self.config.token or None

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    @property
    def keys_path(self) -> Path:
        return self.home / "keys.json"

    def check_out_dir(self, path: str | os.PathLike[str]) -> Path:
        """`path` resolved, if a run may write its files there (`--out`); else a StudioError (see `check_out_dir`)."""
        return check_out_dir(self.home, path)

    def _load_config(self) -> StudioConfig:
        return read_config(self.config_path)

    def _keys(self) -> dict[str, str]:
        return read_keys(self.keys_path)

    def key(self, provider: str) -> str | None:
        """The API key for `provider`: environment variable first, then keys.json."""
        env_var = KEY_ENV_VARS.get(provider)
        if env_var and self._environ.get(env_var):
            return self._environ[env_var]
        return self._keys().get(provider)

    def require_key(self, provider: str) -> str:
        value = self.key(provider)
        if not value:
            env_var = KEY_ENV_VARS.get(provider, f"{provider.upper()}_API_KEY")
            raise NotConfigured(
                f"no API key for {provider}",
                provider=provider,
                hint=f"set {env_var} or run 'portrait keys set {provider}'",
            )
        return value

    def set_key(self, provider: str, value: str) -> None:
        """Store a key in keys.json: written atomically, readable only by the owner (0600) from the start."""
        if provider not in KEY_ENV_VARS:
            raise UsageError(f"unknown provider '{provider}'", field="provider",
                             hint=f"keys are for: {', '.join(KEY_ENV_VARS)} (the local provider needs none)")
        value = value.strip()
        if not value or not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
            raise UsageError("an API key is one word of printable ASCII characters", field="key",
                             hint="paste the key exactly as the provider's dashboard shows it")
        keys = self._keys()
        keys[provider] = value
        self.ensure_home()
        atomic_write_text(self.keys_path, json.dumps(keys, indent=2) + "\n", mode=0o600)

    def keys_mode_problem(self) -> str | None:
        """Why keys.json's permissions are unsafe (readable by others), or None."""
        if not self.keys_path.is_file():
            return None
        mode = stat.S_IMODE(self.keys_path.stat().st_mode)
        if mode & 0o077:
            return f"{self.keys_path} is readable by others (mode {mode:o}; should be 600)"
        return None

    def secrets(self) -> list[str]:
        """Every key value known to this studio, so writers can prove none leaks."""
        found = [self._environ[v] for v in KEY_ENV_VARS.values() if self._environ.get(v)]
        found += list(self._keys().values())
        if self.token:
            found.append(self.token)
        if self.database and "://" in self.database:
            from urllib.parse import urlsplit

            password = urlsplit(self.database).password
            if password and len(password) >= 12:  # a short one would match ordinary words in prompts
                found.append(password)
        return found
