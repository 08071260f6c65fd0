"""`portrait doctor`: check a studio folder, and with `repair=True` fix what can be fixed safely.

A kill or a full disk mid-write, a hand-edited keys.json or a copied-around ledger used to
end in a traceback. The doctor looks at everything the studio keeps and says, per finding,
what is wrong and what fixes it:

- config.toml parses and validates; where hosted calls go (a loopback host is a sandbox);
- keys.json parses, is readable by its owner only (0600), names known providers;
- the ledger opens, passes SQLite's integrity check and has every migration;
- every image the ledger lists is on disk: the content-addressed original matches its
  sha256, the run-folder copy decodes;
- no temporary files are left over from killed writers.

Repairs never delete anything the user made: a damaged keys.json or ledger is moved aside
(`<name>.damaged-<time>`) and the ledger's readable rows are salvaged into a new one; a
missing or truncated run-folder copy is restored from the content-addressed store (and the
store from an intact copy); keys.json gets mode 0600; temporary files older than
`temp_age_s` are removed. Everything else is reported with the manual fix.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from .config import KEY_ENV_VARS, StudioConfig, read_config, read_keys
from .errors import LedgerError, StudioError
from .files import atomic_copy, is_temp_file
from .ledger import Ledger

__all__ = ["DoctorReport", "Finding", "examine"]

Severity = Literal["ok", "info", "warning", "problem", "fixed"]


@dataclass(frozen=True)
class Finding:
    """One thing the doctor looked at: what it found and what fixes (or fixed) it."""

    area: str
    severity: Severity
    message: str
    fix: str | None = None


@dataclass
class DoctorReport:
    home: Path
    repair: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    @property
    def healthy(self) -> bool:
        """No problem is left (warnings and repaired findings are fine)."""
        return not self.problems

    def add(self, area: str, severity: Severity, message: str, fix: str | None = None) -> None:
        self.findings.append(Finding(area, severity, message, fix))


def examine(
    home: str | os.PathLike[str],
    *,
    repair: bool = False,
    temp_age_s: float = 600.0,
    now: float | None = None,
) -> DoctorReport:
    """Check the studio at `home`; with `repair`, fix what is safe to fix. Never raises a StudioError
    for what it finds: every problem is a finding."""
    report = DoctorReport(Path(home), repair)
    root = report.home
    if not root.exists():
        report.add("studio", "info", f"no studio at {root} yet", "it is created by the first command that records")
        return report
    if not root.is_dir():
        report.add("studio", "problem", f"{root} is a file, not a studio folder", "point --home at a folder")
        return report
    writable = os.access(root, os.W_OK)
    if not writable:
        report.add("studio", "warning", f"{root} is read-only: read commands work, nothing can be recorded",
                   "make it writable to shoot or repair")
    elif repair:
        report.add("studio", "ok", f"{root} is writable")
    can_fix = repair and writable
    when = now if now is not None else time.time()

    config = _check_config(report, root)
    _check_sandbox(report, config)
    _check_keys(report, root, can_fix, when)
    ledger = _check_ledger(report, root, can_fix, when)
    if ledger is not None:
        with ledger:
            _check_files(report, ledger, can_fix, root, config)
    _check_temp_files(report, root, can_fix, when, temp_age_s)
    return report


def _check_config(report: DoctorReport, root: Path) -> StudioConfig | None:
    try:
        config = read_config(root / "config.toml")
    except StudioError as exc:
        report.add("config", "problem", exc.message, exc.hint)
        return None
    present = (root / "config.toml").exists()
    report.add("config", "ok", "config.toml is valid" if present else "no config.toml (defaults apply)")
    return config


def _check_sandbox(report: DoctorReport, config: StudioConfig | None) -> None:
    if config is None:
        return
    host = urlparse(config.bfl_host).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        report.add("sandbox", "warning", f"hosted BFL calls go to {config.bfl_host}, a local sandbox: images are not FLUX",
                   "remove bfl_host from config.toml to use the real API")
    elif urlparse(config.bfl_host).scheme != "https":
        report.add("sandbox", "warning", f"bfl_host {config.bfl_host} is not https: the key would travel in clear text",
                   "use https://api.bfl.ai")


def _aside(path: Path, when: float) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    return target


def _check_keys(report: DoctorReport, root: Path, can_fix: bool, when: float) -> None:
    path = root / "keys.json"
    if not path.exists():
        report.add("keys", "ok", "no keys.json (keys come from the environment, or 'portrait keys set')")
        return
    try:
        keys = read_keys(path)
    except StudioError as exc:
        if can_fix and path.is_file():
            moved = _aside(path, when)
            report.add("keys", "fixed", f"{exc.message}: moved it aside to {moved.name}",
                       "store your keys again with 'portrait keys set PROVIDER'")
        else:
            report.add("keys", "problem", exc.message, exc.hint)
        return
    unknown = sorted(set(keys) - set(KEY_ENV_VARS))
    if unknown:
        report.add("keys", "warning", f"keys.json has keys for unknown providers: {', '.join(unknown)}",
                   f"keys are used for: {', '.join(KEY_ENV_VARS)}")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        if can_fix:
            path.chmod(0o600)
            report.add("keys", "fixed", f"keys.json was readable by others (mode {mode:o}); now 600")
        else:
            report.add("keys", "problem", f"keys.json is readable by others (mode {mode:o})",
                       "chmod 600 keys.json, or run 'portrait doctor --repair'")
        return
    report.add("keys", "ok", f"keys.json is valid and private ({len(keys)} key{'s' if len(keys) != 1 else ''})")


def _check_ledger(report: DoctorReport, root: Path, can_fix: bool, when: float) -> Ledger | None:
    path = root / "ledger.db"
    if not path.exists():
        report.add("ledger", "ok", "no ledger yet (nothing recorded)")
        return None
    problem: str | None = None
    ledger: Ledger | None = None
    try:
        ledger = Ledger(path, read_only=not can_fix)  # --repair writes what it restores (labelled copies)
        errors = ledger.integrity_errors()
        if errors:
            problem = f"the ledger fails SQLite's integrity check: {'; '.join(errors[:3])}"
    except LedgerError as exc:
        problem = exc.message
    except Exception as exc:  # sqlite3.DatabaseError from a page read deep in the file
        problem = f"the ledger is damaged ({exc})"
    if problem is None:
        assert ledger is not None
        pending = ledger.pending_migrations()
        if pending:  # only on a read-only studio: a writable one is upgraded on open
            report.add("ledger", "problem", f"the ledger needs migrations {', '.join(pending)}", "make the studio writable")
        else:
            report.add("ledger", "ok", "ledger.db passes the integrity check and is up to date")
        return ledger
    if ledger is not None:
        ledger.close()
    if not can_fix:
        report.add("ledger", "problem", problem,
                   "run 'portrait doctor --repair': the file is kept aside and its readable rows are copied to a new ledger")
        return None
    moved = _aside(path, when)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, moved.with_name(moved.name + suffix))
    try:
        counts = Ledger.salvage(moved, path)
    except Exception as exc:  # nothing readable: start empty, the damaged file stays aside
        with Ledger(path):
            pass
        counts = {}
        note = f"nothing could be read ({exc})"
    else:
        rescued = {t: n for t, n in counts.items() if n > 0}
        note = "salvaged " + (", ".join(f"{n} {t}" for t, n in rescued.items()) or "no rows")
        lost = [t for t, n in counts.items() if n < 0]
        if lost:
            note += f"; unreadable: {', '.join(lost)}"
    report.add("ledger", "fixed", f"{problem}: moved it aside to {moved.name} and started a new ledger; {note}",
               "keep the .damaged file until you are sure nothing else is needed from it")
    return Ledger(path, read_only=not can_fix)


def _sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _decodes(path: Path) -> bool:
    """The whole picture decodes (a truncated PNG or JPEG does not)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def _check_files(report: DoctorReport, ledger: Ledger, can_fix: bool, root: Path, config: Any = None) -> None:
    files = ledger.stored_files()
    if not files:
        return
    store_ok: dict[str, bool] = {}
    for f in files:  # the content-addressed originals first: copies are restored from them
        if f.sha256 in store_ok:
            continue
        path = Path(f.path)
        good = _sha256(path) == f.sha256
        if not good:  # only a byte-identical file can stand in (an import's own file; labelled copies differ)
            donor = next((Path(g.out_path) for g in files if g.sha256 == f.sha256 and g.out_path
                          and _sha256(Path(g.out_path)) == f.sha256), None)
            what = "is missing" if not path.exists() else "does not match its sha256 (truncated or changed)"
            if donor is not None and can_fix:
                atomic_copy(donor, path)
                report.add("files", "fixed", f"image {f.sha256[:12]} {what}: restored {path} from {donor}")
                good = True
            else:
                labelled = next((g.out_path for g in files if g.sha256 == f.sha256 and g.out_path
                                 and Path(g.out_path).exists()), None)
                hint = ("run 'portrait doctor --repair'" if donor else "restore the studio's images/ folder from a backup"
                        + (f"; the labelled copy {labelled} still holds the picture" if labelled else ""))
                report.add("files", "problem", f"image {f.sha256[:12]} {what}: {path}", hint)
        store_ok[f.sha256] = good
    copies = {(f.out_path, f.sha256, f.result_id, f.operation) for f in files if f.out_path}
    engine = None
    for out_path, sha, result_id, operation in sorted(copies, key=lambda c: c[0] or ""):
        out = Path(out_path)
        if operation == "import":
            continue  # the user's own file: not the studio's to restore
        recorded = ledger.file(out)
        intact = out.exists() and _decodes(out) and (recorded is None or _sha256(out) == recorded["sha256"])
        if intact:
            continue
        what = "is missing" if not out.exists() else "is truncated or damaged"
        if can_fix and store_ok.get(sha) and result_id:
            engine = engine or _engine(ledger, root, config)
            engine.deliver(ledger.image(result_id))
            report.add("files", "fixed", f"run copy {out} {what}: written again from the content-addressed original, "
                                         "labelled")
        else:
            report.add("files", "problem", f"run copy {out} {what}",
                       "run 'portrait doctor --repair' (or 'portrait resume RUN')" if store_ok.get(sha)
                       else "the original is damaged too")
    bad = sum(1 for f in report.findings if f.area == "files")
    if not bad:
        report.add("files", "ok", f"{len(store_ok)} image{'s' if len(store_ok) != 1 else ''} and "
                                  f"{len(copies)} run cop{'ies' if len(copies) != 1 else 'y'} are intact")
    sandboxed = {f.sha256 for f in files if f.sandbox}
    if sandboxed:
        report.add("sandbox", "info", f"{len(sandboxed)} image{'s' if len(sandboxed) != 1 else ''} in the ledger came "
                                      "from a sandbox (placeholder pictures, not FLUX)")


def _engine(ledger: Ledger, root: Path, config: Any) -> Any:
    """Just enough engine to write labelled copies again (no provider, nothing paid)."""
    from .engine import Engine
    from .finishing.lineage import LabelSettings

    labels = LabelSettings(creator=getattr(config, "creator", None), credit=getattr(config, "credit", None),
                           c2pa=getattr(config, "c2pa", None))
    return Engine(ledger=ledger, images_dir=root / "images", runs_dir=root / "runs", providers={}, labels=labels)


def _check_temp_files(report: DoctorReport, root: Path, can_fix: bool, when: float, temp_age_s: float) -> None:
    leftovers: list[Path] = []
    for folder, _, names in os.walk(root):
        base = Path(folder)
        in_tmp = base == root / "tmp" or root / "tmp" in base.parents
        leftovers += [base / n for n in names if in_tmp or is_temp_file(n)]
    old: list[Path] = []
    recent: list[Path] = []
    for path in leftovers:
        try:
            age = when - path.stat().st_mtime
        except OSError:
            continue
        (old if age >= temp_age_s else recent).append(path)
    if recent:
        report.add("temp", "info", f"{len(recent)} temporary file{'s' if len(recent) != 1 else ''} being written now "
                                   "(another portrait process?)")
    if not old:
        if not recent:
            report.add("temp", "ok", "no temporary files left over")
        return
    shown = ", ".join(str(p.relative_to(root)) for p in old[:5]) + (" ..." if len(old) > 5 else "")
    if can_fix:
        removed = 0
        for path in old:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        report.add("temp", "fixed", f"removed {removed} temporary file{'s' if removed != 1 else ''} left by killed writers: {shown}")
    else:
        report.add("temp", "warning", f"{len(old)} temporary file{'s' if len(old) != 1 else ''} left by killed writers: {shown}",
                   "run 'portrait doctor --repair' to remove them")

