"""Hostile requests against the web studio: what it serves, whom it obeys, which images it sends.

Each test is one finding of the adversarial pass (issue #14): a secret or database served,
a cross-origin post obeyed, a server file sent as a reference, a photo sent without consent,
a bad upload answered with a traceback.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from _web_helpers import portrait_png, shoot_into_ledger
from portrait_studio.config import Studio
from portrait_studio.errors import StudioError
from portrait_studio.ledger import Ledger
from portrait_studio.web import create_app
from portrait_studio.web.security import size_text

SECRET = "bfl-secret-key-0123456789"
RIGHTS = {"who": "Ada Lovelace", "source": "own photo", "permission": "model release 2026-03-02"}
ONE = {"subject": {"description": "a woman in her forties, confident"}}


@pytest.fixture
def app(studio: Studio):  # type: ignore[no-untyped-def]
    from _engine_helpers import starter

    return create_app(studio, checker=None, start_sandbox=starter(latency=0.05))


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _runs(studio: Studio) -> int:
    with Ledger(studio.ledger_path) as ledger:
        return int(ledger.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


# --- what /files serves ------------------------------------------------------------------------


def test_an_out_folder_above_the_studio_never_exposes_the_keys_or_the_ledger(client: TestClient, studio: Studio) -> None:
    studio.set_key("bfl", SECRET)
    studio.config_path.write_text('creator = "Ada"\n')
    run_id, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1], out_dir=studio.home.parent)  # --out ..
    (studio.home.parent / "notes.txt").write_text("the user's own file")
    for name in ("keys.json", "ledger.db", "ledger.db-wal", "ledger.db-shm", "config.toml", "studio/keys.json",
                 "../studio/keys.json", str(studio.keys_path), "notes.txt", "../notes.txt", "images",
                 f"runs/{run_id}/run.json"):
        res = client.get(f"/files/{name}")
        assert res.status_code in (400, 404), name
        assert SECRET.encode() not in res.content and b"SQLite" not in res.content
    for name in ("keys.json", "notes.txt", "studio", "../studio/keys.json", "studio%2Fkeys.json"):
        res = client.get(f"/runs/{run_id}/files/{name}")
        assert res.status_code in (400, 404), name
        assert SECRET.encode() not in res.content
    # what the run did write there is still served, from wherever --out put it
    assert client.get(f"/runs/{run_id}/files/run.json").json()["run_id"] == run_id
    out_name = Path(made[0].out_path or "").name
    assert client.get(f"/runs/{run_id}/files/{out_name}").content == Path(made[0].out_path or "").read_bytes()


def test_web_jobs_keep_working_after_the_ledger_was_asked_for(client: TestClient, app, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    """Serving ledger.db opened and closed it in the server process, which drops SQLite's locks."""
    shoot_into_ledger(studio, ["flux-1.1-pro"], [1], out_dir=studio.home.parent)
    for _ in range(3):
        assert client.get("/files/ledger.db").status_code == 404
    started = client.post("/api/shoot", json={"brief": ONE, "models": ["flux-1.1-pro"], "seeds": 2, "sandbox": "always"})
    job = app.fastapi.state.jobs.wait(started.json()["job_id"], timeout=60)
    assert job.status == "done", job.error


def test_only_recorded_images_are_served_from_the_image_store(client: TestClient, studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    stored = Path(made[0].path).relative_to(studio.home)
    assert client.get(f"/files/{stored}").content == Path(made[0].path).read_bytes()
    uploaded = client.post("/api/references", files={"file": ("ref.png", portrait_png(shade=9), "image/png")}, data=RIGHTS).json()
    assert client.get(f"/files/{Path(uploaded['path']).relative_to(studio.home)}").status_code == 404  # a person's photo


def test_a_nul_byte_or_a_control_character_in_a_file_path_is_a_clear_400(client: TestClient, studio: Studio) -> None:
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    for url in ("/files/run%00.json", f"/files/runs/{run_id}/run.json%00", f"/runs/{run_id}/files/run.json%00",
                "/files/runs%01/x", "/files/runs\\..\\ledger.db"):
        res = client.get(url)
        assert res.status_code == 400, url
        assert res.json()["field"] == "path" and "control character" in res.json()["error"]
    assert client.get("/files/runs%0a/x").status_code == 404  # no route matches a line break


def test_run_and_image_ids_in_urls_are_exact(client: TestClient, studio: Studio) -> None:
    """`%` or a prefix must not act on the newest run or image (vary spends money)."""
    run_id, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    for url in ("/runs/%25", f"/runs/{run_id[:-2]}", "/api/runs/%25/progress", f"/images/{made[0].id[:8]}",
                "/thumbs/%25.jpg", "/images/%25/file"):
        assert client.get(url).status_code == 404, url
    assert client.post("/api/runs/%25/vary", json={"element": "lighting", "value": "clamshell"}).status_code == 404
    assert _runs(studio) == 1


def test_a_missing_image_file_is_a_404_not_a_crash(client: TestClient, studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    Path(made[0].path).unlink()
    res = client.get(f"/images/{made[0].id}/file")
    assert res.status_code == 404 and "missing" in res.json()["error"]
    assert client.get(f"/thumbs/{made[0].id}.jpg").status_code == 404


def test_out_folders_inside_or_above_the_studio_are_refused(studio: Studio, tmp_path: Path) -> None:
    for bad in (studio.home, studio.home.parent, tmp_path, studio.home / "images", studio.home / "exports" / "x"):
        with pytest.raises(StudioError, match="studio folder") as caught:
            studio.check_out_dir(bad)
        assert caught.value.hint and "--out" in caught.value.hint
    assert studio.check_out_dir(tmp_path.parent / "portraits-elsewhere") == (tmp_path.parent / "portraits-elsewhere").resolve()
    assert studio.check_out_dir(studio.runs_dir / "my-run") == (studio.runs_dir / "my-run").resolve()


# --- cross-origin posts --------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:9999", "http://evil.example", "file://", "https://127.0.0.1.evil.example",
                                    "http://127.0.0.1@evil.example", "data:text/html,x", ""])
def test_posts_from_any_other_origin_are_refused(client: TestClient, studio: Studio, origin: str) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    headers = {"origin": origin}
    assert client.post(f"/api/images/{made[0].id}/pick", headers=headers).status_code == 403
    assert client.post("/api/references", headers=headers, data=RIGHTS,
                       files={"file": ("ref.png", portrait_png(), "image/png")}).status_code == 403
    assert client.post("/api/shoot", headers=headers, json={"brief": ONE, "models": ["flux-1.1-pro"], "sandbox": "always"}).status_code == 403
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.image(made[0].id).picked is False
        assert ledger.db.execute("SELECT COUNT(*) FROM rights").fetchone()[0] == 0
    assert _runs(studio) == 1


def test_the_studios_own_pages_may_post(client: TestClient, studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    assert client.post(f"/api/images/{made[0].id}/pick", headers={"origin": "http://127.0.0.1"}).status_code == 200
    assert client.post("/api/brief/preview", json={"brief": ONE, "models": []}).status_code == 200  # scripts send no Origin
    res = client.post("/api/brief/preview", json={"brief": ONE, "models": []}, headers={"sec-fetch-site": "cross-site"})
    assert res.status_code == 403


def test_a_token_with_characters_outside_ascii_is_refused_cleanly(studio: Studio) -> None:
    with TestClient(create_app(studio, token="s3cret-token-for-tests", checker=None), base_url="http://192.168.1.20:8765") as c:
        assert c.get("/gallery?token=%C3%A9t%C3%A9").status_code == 401
        assert c.get("/gallery", headers={"authorization": "Bearer \u00e9t\u00e9".encode("latin-1")}).status_code == 401


def test_a_host_header_that_does_not_parse_is_refused_not_crashed(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/gallery", headers={"host": "[::1"}).status_code == 400


# --- references ----------------------------------------------------------------------------------


def _upload(client: TestClient, shade: int = 5, role: str = "identity") -> dict:  # type: ignore[type-arg]
    res = client.post("/api/references", files={"file": ("ref.png", portrait_png(shade=shade), "image/png")},
                      data={**RIGHTS, "role": role})
    assert res.status_code == 200, res.text
    return dict(res.json())


def _shoot(client: TestClient, references: list[dict]) -> object:  # type: ignore[type-arg]
    return client.post("/api/shoot", json={"brief": {**ONE, "references": references}, "models": ["flux-2-pro"],
                                           "seeds": 1, "sandbox": "always"})


def test_a_server_file_is_never_accepted_as_a_reference(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(portrait_png(shade=40))
    for path in (str(face), "/etc/passwd", str(studio.keys_path), str(studio.ledger_path), "../face.png", "%", "a\u0000b"):
        ref = {"path": path, "role": "identity", "rights": RIGHTS}
        for res in (_shoot(client, [ref]),
                    client.post("/api/brief/preview", json={"brief": {**ONE, "references": [ref]}, "models": ["flux-2-pro"]})):
            assert res.status_code == 422, (path, res.text)  # type: ignore[attr-defined]
            body = res.json()  # type: ignore[attr-defined]
            assert body["field"] == "references.0.path" and "upload" in body["hint"]
    assert _runs(studio) == 0


def test_an_uploaded_reference_with_its_rights_is_shot(client: TestClient, app, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    stored = _upload(client)
    res = _shoot(client, [{"path": stored["path"], "role": "identity"}])  # rights come from the ledger
    assert res.status_code == 200, res.text  # type: ignore[attr-defined]
    job = app.fastapi.state.jobs.wait(res.json()["job_id"], timeout=60)  # type: ignore[attr-defined]
    assert job.status == "done", job.error
    with Ledger(studio.ledger_path) as ledger:
        run = ledger.run(job.run_id)
        assert run.brief and run.brief["references"][0]["rights"]["who"] == "Ada Lovelace"


def test_a_studio_image_as_identity_needs_a_rights_record(client: TestClient, studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    res = _shoot(client, [{"path": made[0].out_path, "role": "identity"}])
    assert res.status_code == 403  # type: ignore[attr-defined]
    assert "references.0.rights" in res.json()["error"] and "synthetic" in res.json()["hint"]  # type: ignore[attr-defined]
    preview = client.post("/api/brief/preview", json={"brief": {**ONE, "references": [{"path": made[0].path}]}, "models": ["flux-2-pro"]})
    assert preview.status_code == 403
    assert _runs(studio) == 1
    synthetic = {"who": "synthetic", "source": f"generated by the studio, {made[0].id}", "permission": "studio-generated face"}
    res = _shoot(client, [{"path": made[0].out_path, "role": "identity", "rights": synthetic}])
    assert res.status_code == 200, res.text  # type: ignore[attr-defined]
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.rights_for(made[0].image_sha256)["who"] == "synthetic"
    style = _shoot(client, [{"path": made[0].path, "role": "style"}])  # a style reference of a studio image needs none
    assert style.status_code == 200, style.text  # type: ignore[attr-defined]


def test_a_missing_or_changed_reference_is_a_clear_422_in_the_preview_too(client: TestClient, studio: Studio) -> None:
    gone, changed = _upload(client, shade=11), _upload(client, shade=12)
    Path(gone["path"]).unlink()
    Path(changed["path"]).write_bytes(b"not an image any more")
    for stored in (gone, changed):
        ref = {"path": stored["path"], "role": "identity"}
        preview = client.post("/api/brief/preview", json={"brief": {**ONE, "references": [ref]}, "models": ["flux-2-pro"]})
        shoot = _shoot(client, [ref])
        for res in (preview, shoot):
            assert res.status_code == 422, res.text  # type: ignore[attr-defined]
            assert res.json()["field"] == "references.0.path"  # type: ignore[attr-defined]
    assert _runs(studio) == 0


# --- uploads -------------------------------------------------------------------------------------


def _bomb() -> bytes:
    """A 150 KB PNG that claims 12,000 × 12,000 pixels (144 MP)."""
    buf = BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def test_a_decompression_bomb_upload_is_a_clear_422(client: TestClient, studio: Studio) -> None:
    bomb = _bomb()
    assert len(bomb) < 1_000_000
    res = client.post("/api/references", files={"file": ("bomb.png", bomb, "image/png")}, data=RIGHTS)
    assert res.status_code == 422
    assert res.json()["field"] == "references" and "claims more pixels than" in res.json()["error"]
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.db.execute("SELECT COUNT(*) FROM rights").fetchone()[0] == 0


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, portrait_png()[:300], b"GIF89a" + b"\0" * 30])
def test_an_empty_truncated_or_unsupported_upload_is_a_clear_422(client: TestClient, data: bytes) -> None:
    res = client.post("/api/references", files={"file": ("x.png", data, "image/png")}, data=RIGHTS)
    assert res.status_code == 422 and res.json()["field"] == "references"


def test_the_upload_limit_is_stated_in_binary_units() -> None:
    assert size_text(20 * 1024 * 1024) == "20 MiB"
    assert size_text(21_000_000) == "20 MiB"  # what used to be called "21 MB"
    assert size_text(200_000) == "195.3 KiB" and size_text(512) == "512 bytes"


def test_an_oversized_upload_names_the_limit_as_20_mib(client: TestClient) -> None:
    res = client.post("/api/references", content=b"x" * 10, headers={
        "content-type": "multipart/form-data; boundary=zz", "content-length": str(25 * 1024 * 1024)})
    assert res.status_code == 413
    assert "the limit is 20 MiB" in res.json()["error"] and "MB" not in res.json()["error"]


def test_the_run_page_links_the_run_files_wherever_out_put_them(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1], out_dir=tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    page = client.get(f"/runs/{run_id}", headers={"accept": "text/html"}).text
    assert f'href="/runs/{run_id}/files/run.json"' in page and "notes.txt" not in page
    assert client.get(f"/runs/{run_id}/files/run.json").json()["run_id"] == run_id
