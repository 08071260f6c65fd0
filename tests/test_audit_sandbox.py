"""An audit bundle of a real (sandbox) run: everything an auditor needs, and never the API key."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from portrait_studio.brief import example_brief_path
from portrait_studio.config import Studio
from portrait_studio.ledger import Ledger
from portrait_studio.testing.sandbox import start_sandbox

SECRET = "bfl_sandbox_secret_0123456789"


def test_audit_bundle_of_a_sandbox_run_has_everything_and_no_key(cli, studio_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    with start_sandbox("bfl", latency=0.05, key=SECRET) as sb:
        studio_home.mkdir(parents=True, exist_ok=True)
        (studio_home / "config.toml").write_text(f'bfl_host = "{sb.url}"\n[providers.bfl]\npoll_interval = 0.05\n')
        monkeypatch.setenv("BFL_API_KEY", SECRET)
        code, out, err = cli("shoot", example_brief_path("rembrandt-studio-headshot"), "-m", "flux-1.1-pro",
                             "--seeds", "2", "--sandbox", "never", "--json")
        assert code == 0, err
        run_id = json.loads(out)["run_id"]
        assert sb.stats.paid == 2 and sb.stats.headers_seen  # the key really went over the wire
    bundle = tmp_path / "bundle.zip"
    code, _, err = cli("audit", run_id, "--out", bundle)
    assert code == 0, err
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        assert {"records.csv", "summary.html", "run.json"} <= set(names)
        records = [json.loads(zf.read(n)) for n in names if n.startswith("records/")]
        assert len(records) == 2
        for r in records:
            assert r["request"]["provider_task_id"] and r["seed"] is not None and r["cost"]["usd"] == 0.04
            assert r["labels"]["info"]["digital_source_type"].endswith("trainedAlgorithmicMedia")
            assert r["checks"]["overall"] in {"pass", "warn", "fail"}
            # the bundle ships the labelled copies, and says so because it checked them
            assert r["label_check"]["labelled"] and r["label_check"]["digital_source_type"].endswith("trainedAlgorithmicMedia")
        summary = zf.read("summary.html").decode()
        assert "2 of 2 files in this bundle carry AI labels" in summary

        from portrait_studio.labels import verify

        for name in names:
            if name.startswith("images/"):
                shipped = tmp_path / Path(name).name
                shipped.write_bytes(zf.read(name))
                assert verify(shipped).labelled, name
        for name in names:
            assert SECRET.encode() not in zf.read(name), name
    with Ledger(Studio(studio_home).ledger_path) as ledger:
        dump = "\n".join(str(tuple(row)) for t in ("runs", "requests", "results", "labels", "checks")
                         for row in ledger.db.execute(f"SELECT * FROM {t}"))
    assert SECRET not in dump
    for path in studio_home.rglob("*"):
        if path.is_file() and path.name != "config.toml":
            assert SECRET.encode() not in path.read_bytes(), path
