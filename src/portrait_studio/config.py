"""The studio folder: ledger, images, config and keys.

Read once at the edge (CLI, web, tests) and passed down as a `Studio`; library code
never reads the environment on its own.

    <home>/
      config.toml     creator, credit, default budget, C2PA certificate and key, provider options
      keys.json       API keys (never logged, never written to the ledger or image metadata)
      ledger.db       the SQLite ledger
      images/ab/<sha256>.<ext>   content-addressed images
      runs/<run id>/  a folder per run: images, contact sheet, run.json

`PORTRAIT_STUDIO_HOME` (or `--home`) moves the folder; the default is `~/.portrait-studio`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .errors import NotConfigured, StudioError

__all__ = ["HOME_ENV", "C2paConfig", "Studio", "StudioConfig", "resolve_home"]

HOME_ENV = "PORTRAIT_STUDIO_HOME"

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

    model_config = ConfigDict(extra="forbid")

    creator: str | None = None
    credit: str | None = None
    default_budget_usd: float | None = Field(default=None, ge=0)
    bfl_host: str = "https://api.bfl.ai"
    c2pa: C2paConfig = Field(default_factory=C2paConfig)
    providers: dict[str, dict[str, object]] = Field(default_factory=dict)


def resolve_home(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser()
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    return Path.home() / ".portrait-studio"


class Studio:
    """A studio folder, its config and its keys. Cheap to create; nothing heavy is loaded."""

    def __init__(self, home: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self._environ = dict(os.environ if environ is None else environ)
        self.config = self._load_config()

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Studio:
        return cls(resolve_home(home))

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.db"

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
        """`path` resolved, if a run may write its files there (`--out`); else a StudioError.

        Refused: the studio folder itself, any folder above it (a run folder is served by the web
        studio, and must never hold the keys or the ledger) and any folder inside it except under
        runs/ (images/, thumbs/ … belong to the studio).
        """
        out = Path(path).expanduser().resolve()
        home = self.home.resolve()
        if home.is_relative_to(out):
            raise StudioError(f"--out {path} {'is' if out == home else 'contains'} the studio folder {home}",
                              hint="write the run to a folder of its own outside the studio, e.g. --out ./portraits")
        if out.is_relative_to(home) and not out.is_relative_to(self.runs_dir.resolve()):
            raise StudioError(f"--out {path} is inside the studio folder {home}",
                              hint=f"leave --out out (runs go to {self.runs_dir}) or choose a folder outside the studio")
        return out

    def _load_config(self) -> StudioConfig:
        if not self.config_path.exists():
            return StudioConfig()
        try:
            data = tomllib.loads(self.config_path.read_text())
            return StudioConfig.model_validate(data)
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise StudioError(f"{self.config_path}: {exc}", hint="fix or delete the config file") from exc

    # --- keys -------------------------------------------------------------------------
    def key(self, provider: str) -> str | None:
        """The API key for `provider`: environment variable first, then keys.json."""
        env_var = KEY_ENV_VARS.get(provider)
        if env_var and self._environ.get(env_var):
            return self._environ[env_var]
        if self.keys_path.exists():
            value = json.loads(self.keys_path.read_text()).get(provider)
            return str(value) if value else None
        return None

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
        keys = json.loads(self.keys_path.read_text()) if self.keys_path.exists() else {}
        keys[provider] = value
        self.keys_path.write_text(json.dumps(keys, indent=2))
        self.keys_path.chmod(0o600)

    def secrets(self) -> list[str]:
        """Every key value known to this studio, so writers can prove none leaks."""
        found = [self._environ[v] for v in KEY_ENV_VARS.values() if self._environ.get(v)]
        if self.keys_path.exists():
            found += [str(v) for v in json.loads(self.keys_path.read_text()).values() if v]
        return found
