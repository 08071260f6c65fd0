"""The web studio through its HTTP interface: every route, the error answers and the guards."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from _web_helpers import BRIEF, portrait_png, read_events, shoot_into_ledger
from portrait_studio.brief import Brief, load_brief
from portrait_studio.config import Studio
from portrait_studio.errors import (
    BriefError,
    BudgetExceeded,
    ConsentRequired,
    LedgerError,
    NotConfigured,
    StudioError,
)
from portrait_studio.gallery import THUMB_PX, thumbnail_path
from portrait_studio.ledger import Ledger
from portrait_studio.web import check_bind, create_app, http_status

HTML = {"accept": "text/html"}
ONE_MODEL = {"subject": {"description": "a woman in her forties, confident"}}


@pytest.fixture
def app(studio: Studio):  # type: ignore[no-untyped-def]
    from _engine_helpers import starter

    return create_app(studio, checker=None, start_sandbox=starter(latency=0.05))


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _wait(app, job_id: str):  # type: ignore[no-untyped-def]
    return app.fastapi.state.jobs.wait(job_id, timeout=60)


# --- brief builder --------------------------------------------------------------------------


def _slots(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    names = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names += _slots(ann, f"{prefix}{name}.")
        elif name != "references":
            names.append(prefix + name)
    return names


def test_brief_builder_has_a_field_for_every_brief_slot_and_the_preset_pickers(client: TestClient) -> None:
    page = client.get("/", headers=HTML).text
    missing = [slot for slot in _slots(Brief) if f'name="{slot}"' not in page]
    assert missing == []
    assert 'id="references"' in page and "consent" in page
    for preset_choice in ("clamshell", "105mm-portrait", "white-seamless", "three-quarter"):
        assert f'value="{preset_choice}"' in page


def test_preview_shows_each_models_prompt_warnings_and_cost(client: TestClient) -> None:
    brief = {**ONE_MODEL, "hands": {"visible": True, "pose": "hand resting on chin"}}
    data = client.post("/api/brief/preview", json={"brief": brief, "models": ["flux-1.1-pro", "flux-2-pro"]}).json()
    assert data["ok"] and [m["id"] for m in data["models"]] == ["flux-1.1-pro", "flux-2-pro"]
    pro = data["models"][0]
    assert "a woman in her forties" in pro["prompt"] and pro["cost_usd"] > 0
    assert any("hands visible" in w for m in data["models"] for w in m["warnings"])
    assert data["total_usd_per_seed"] == pytest.approx(sum(m["cost_usd"] for m in data["models"]))
    assert load_brief_text(data["yaml"]).hands.visible


def load_brief_text(text: str) -> Brief:
    from portrait_studio.brief import parse_brief

    return parse_brief(yaml.safe_load(text))


def test_preview_of_an_invalid_brief_names_the_field_and_the_fix(client: TestClient) -> None:
    data = client.post("/api/brief/preview", json={"brief": {"subject": {"age": 16}}, "models": []}).json()
    assert not data["ok"] and data["field"] == "subject.age" and "18 or older" in data["error"]
    data = client.post("/api/brief/preview", json={"brief": {"subject": {}, "lighting": "rembrant"}, "models": []}).json()
    assert "did you mean rembrandt" in data["error"]


def test_preview_explains_a_model_that_cannot_take_the_brief(client: TestClient) -> None:
    brief = {**ONE_MODEL, "output": {"resolution": "4MP"}}
    data = client.post("/api/brief/preview", json={"brief": brief, "models": ["flux-1.1-pro"]}).json()
    (pro,) = data["models"]
    assert pro["error"] and pro["hint"] and pro["prompt"] is None


def test_saved_brief_is_yaml_that_loads_back_to_the_same_brief(client: TestClient, studio: Studio) -> None:
    brief = BRIEF.model_dump(mode="json")
    saved = client.post("/api/brief/save", json={"brief": brief, "name": "rembrandt-copy"}).json()
    path = Path(saved["path"])
    assert path == studio.home / "briefs" / "rembrandt-copy.yaml"
    assert load_brief(path) == BRIEF


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/b", "..", ".hidden", "x" * 200])
def test_a_brief_name_with_folders_is_refused(client: TestClient, studio: Studio, name: str) -> None:
    res = client.post("/api/brief/save", json={"brief": ONE_MODEL, "name": name})
    assert res.status_code == 422 and res.json()["hint"]
    assert not (studio.home / "escape.yaml").exists() and not (studio.home.parent / "escape.yaml").exists()


def test_example_briefs_load_into_the_builder(client: TestClient) -> None:
    data = client.get("/api/examples/clamshell-beauty").json()
    assert data["lighting"]["pattern"] == "clamshell"
    res = client.get("/api/examples/nonexistent")
    assert res.status_code == 422 and "portrait brief presets" in res.json()["hint"]
    assert any(m["id"] == "flux-2-pro" for m in client.get("/api/models").json())


# --- shoots and compares -----------------------------------------------------------------------


def test_a_fifth_model_is_refused_before_anything_is_spent(client: TestClient, studio: Studio) -> None:
    five = ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra", "flux-2-max", "flux-2-flex"]
    for kind in ("shoot", "compare"):
        res = client.post("/api/shoot", json={"brief": ONE_MODEL, "models": five, "kind": kind, "seeds": 1})
        assert res.status_code == 422 and "up to 4" in res.json()["hint"]
    res = client.post("/api/brief/preview", json={"brief": ONE_MODEL, "models": five})
    assert res.status_code == 422
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.runs() == []


def test_a_shoot_over_budget_is_refused_and_spends_nothing(client: TestClient, studio: Studio) -> None:
    res = client.post("/api/shoot", json={"brief": ONE_MODEL, "models": ["flux-2-pro"], "seeds": 4, "budget": 0.05})
    assert res.status_code == 402 and "nothing was spent" in res.json()["error"]
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.runs() == []


def test_a_sandbox_shoot_runs_in_the_background_and_streams_progress(app, client: TestClient, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    started = client.post("/api/shoot", json={"brief": ONE_MODEL, "models": ["flux-1.1-pro"], "seeds": 2}).json()
    assert started["url"] == f"/runs/{started['run_id']}" and started["images"] == 2
    events = [json.loads(e) for e in read_events(client, f"/api/runs/{started['run_id']}/events")]
    last = events[-1]
    assert last["progress"]["done"] == 2 and last["job"]["status"] == "done"
    assert len(last["images"]) == 2 and all(i["sandbox"] for i in last["images"])
    assert events[0]["progress"]["done"] < 2  # the stream started before the images arrived
    page = client.get(f"/runs/{started['run_id']}", headers=HTML).text
    assert page.count('class="tile"') == 2 and 'data-finished="true"' in page


def test_run_progress_survives_a_reload_and_a_server_restart(studio: Studio) -> None:
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1, 2, 3])
    with TestClient(create_app(studio, checker=None), base_url="http://127.0.0.1") as fresh:  # no job in memory
        progress = fresh.get(f"/api/runs/{run_id}/progress").json()
        assert progress["progress"]["done"] == 3 and progress["job"] is None
        assert len(read_events(fresh, f"/api/runs/{run_id}/events")) == 1
        assert fresh.get(f"/runs/{run_id}", headers=HTML).text.count('class="tile"') == 3


def test_compare_view_shows_each_model_side_by_side_with_the_feature_table(client: TestClient, studio: Studio) -> None:
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra"], [7], kind="compare")
    page = client.get(f"/runs/{run_id}/compare", headers=HTML).text
    assert 'style="--cols: 3"' in page and page.count('class="cell"') == 3
    for header in ("Price per image", "Max resolution", "Aspect ratios", "This comparison cost", "Checklist"):
        assert header in page
    assert "FLUX1.1 [pro] Ultra" in page or "Ultra" in page


def test_pick_then_vary_one_element_starts_a_locked_round(app, client: TestClient, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    run_id, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [11, 22])
    refused = client.post(f"/api/runs/{run_id}/vary", json={"element": "lighting", "value": "clamshell"})
    assert refused.status_code == 400 and "pick" in refused.json()["hint"]
    assert client.post(f"/api/images/{made[1].id}/pick").json()["image"]["picked"]
    assert "★ Picked" in client.get(f"/images/{made[1].id}", headers=HTML).text
    started = client.post(f"/api/runs/{run_id}/vary", json={"element": "lighting", "value": "clamshell"}).json()
    assert _wait(app, started["job_id"]).status == "done"
    with Ledger(studio.ledger_path) as ledger:
        row = ledger.run(started["run_id"])
        (req,) = ledger.requests(row.id)
    assert row.varied == {"lighting": "clamshell"} and req.seed == 22
    bad = client.post(f"/api/runs/{run_id}/vary", json={"element": "mood-ring", "value": "x"})
    assert bad.status_code == 422


# --- gallery ------------------------------------------------------------------------------------


def test_an_empty_gallery_says_how_to_make_the_first_image(client: TestClient) -> None:
    page = client.get("/gallery", headers=HTML).text
    assert "No images yet" in page and 'href="/"' in page


def test_gallery_filters_by_run_model_seed_check_and_picked(client: TestClient, studio: Studio) -> None:
    run_a, a = shoot_into_ledger(studio, ["flux-1.1-pro", "flux-2-pro"], [1, 2])
    run_b, b = shoot_into_ledger(studio, ["flux-1.1-pro"], [3])
    with Ledger(studio.ledger_path) as ledger:
        ledger.record_checks(a[0].image_sha256, "fail", 40.0, {"overall": "fail", "items": []})
        ledger.record_checks(a[1].image_sha256, "pass", 98.0, {"overall": "pass", "items": []})
        ledger.pick(run_a, a[1].id)

    def shown(query: str) -> set[str]:
        page = client.get(f"/gallery?{query}", headers=HTML).text
        return {i.id for i in a + b if f'data-id="{i.id}"' in page}

    assert shown("") == {i.id for i in a + b}
    assert shown(f"run={run_b}") == {b[0].id}
    assert shown("model=flux-2-pro") == {i.id for i in a if i.model == "flux-2-pro"}
    assert shown("seed=2") == {i.id for i in a if i.seed == 2}
    assert shown("check=fail") == {a[0].id}
    assert shown("check=unchecked") == {a[2].id, a[3].id, b[0].id}
    assert shown("picked=true") == {a[1].id}
    page = client.get("/gallery?check=fail&model=flux-1.1-pro", headers=HTML).text
    assert "check-fail" in page
    none = client.get("/gallery?seed=999", headers=HTML).text
    assert "No images match these filters" in none


def test_gallery_pages_through_many_images(client: TestClient, studio: Studio) -> None:
    shoot_into_ledger(studio, ["flux-1.1-pro"], list(range(1, 13)), size=(48, 64))
    page = client.get("/gallery?page=1&per_page=5", headers=HTML)
    assert page.status_code == 200
    first = client.get("/gallery", headers=HTML).text
    assert first.count('class="tile"') == 12 and "page 1 of" not in first


def test_thumbnails_are_small_and_made_only_once(client: TestClient, studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [5], size=(768, 1024))
    res = client.get(f"/thumbs/{made[0].id}.jpg")
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
    path = thumbnail_path(studio.home, made[0].image_sha256)
    with Image.open(path) as im:
        assert max(im.size) == THUMB_PX
    assert len(res.content) < Path(made[0].path).stat().st_size / 5
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    client.get(f"/thumbs/{made[0].id}.jpg")
    assert path.stat().st_mtime_ns == stamp


def test_detail_view_shows_prompt_seed_settings_cost_checks_and_lineage(client: TestClient, studio: Studio) -> None:
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [4242])
    image = made[0]
    checklist = {"overall": "warn", "width": 192, "height": 256, "items": [
        {"item": "eyes.sharpness", "status": "pass", "explanation": "in focus", "region": [40, 60, 120, 90]},
        {"item": "export.label", "status": "warn", "explanation": "No AI label", "region": None}]}
    with Ledger(studio.ledger_path) as ledger:
        ledger.record_checks(image.image_sha256, "warn", 90.0, checklist)
    page = client.get(f"/images/{image.id}", headers=HTML).text
    assert "4242" in page and "Rembrandt lighting" in page and "$0.040" in page
    assert 'class="box status-pass"' in page and "left: 20.83" in page  # 40/192 of the width
    assert "No AI label" in page and "this image" in page
    assert "AI-generated portrait" in page  # every delivered file is labelled; the page shows its caption


def test_unknown_things_are_404_with_the_fix(client: TestClient) -> None:
    res = client.get("/images/img_nope")
    assert res.status_code == 404 and "portrait log" in res.json()["hint"]
    page = client.get("/images/img_nope", headers=HTML)
    assert page.status_code == 404 and "Fix:" in page.text
    assert client.get("/runs/run_nope/compare", headers=HTML).status_code == 404
    assert client.get("/no/such/page", headers=HTML).status_code == 404
    assert client.get("/api/jobs/job_nope").status_code == 404


@pytest.mark.parametrize(("error", "status"), [
    (BriefError("x"), 422), (LedgerError("x"), 404), (BudgetExceeded("x", budget_usd=1, needed_usd=2), 402),
    (ConsentRequired("x"), 403), (NotConfigured("x"), 503), (StudioError("x"), 400),
])
def test_each_kind_of_studio_error_has_its_http_status(error: StudioError, status: int) -> None:
    assert http_status(error) == status


# --- actions --------------------------------------------------------------------------------------


def test_export_with_labels_writes_a_labelled_copy_and_records_it(app, client: TestClient, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    from portrait_studio.labels import verify

    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [77])
    job = _wait(app, client.post(f"/api/images/{made[0].id}/export").json()["job_id"])
    assert job.status == "done", job.error
    exported = studio.home / job.result_id
    report = verify(exported)
    assert report.c2pa.status == "missing" and report.digital_source_type.endswith("trainedAlgorithmicMedia")
    assert report.parameters.get("Seed") == "77" and "Rembrandt" in (report.prompt or "")
    assert client.get(f"/files/{job.result_id}").content == exported.read_bytes()
    assert 'id="c2pa-status">missing' in client.get(f"/images/{made[0].id}", headers=HTML).text


def test_upscale_makes_a_child_image_in_the_lineage(app, client: TestClient, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [8], size=(32, 40))
    assert client.post(f"/api/images/{made[0].id}/upscale", json={"scale": 9}).status_code == 422
    job = _wait(app, client.post(f"/api/images/{made[0].id}/upscale", json={"scale": 2}).json()["job_id"])
    assert job.status == "done", job.error
    child = client.get(f"/images/{job.result_id}", headers=HTML).text
    assert "upscale" in child and f"/images/{made[0].id}" in child
    with Ledger(studio.ledger_path) as ledger:
        row = ledger.image(job.result_id)
    assert (row.width, row.height) == (64, 80) and row.parent_sha256 == made[0].image_sha256


def test_fix_region_runs_in_the_background_and_records_a_child(app, client: TestClient, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    _, made = shoot_into_ledger(studio, ["flux-1.1-pro"], [9])
    assert client.post(f"/api/images/{made[0].id}/fix", json={"region": "elbow"}).status_code == 422
    assert client.post("/api/images/img_nope/fix", json={"region": "eyes"}).status_code == 404
    job = _wait(app, client.post(f"/api/images/{made[0].id}/fix", json={"region": "eyes"}).json()["job_id"])
    events = [json.loads(e) for e in read_events(client, f"/api/jobs/{job.id}/events")]
    assert events[-1]["status"] == job.status == "done", job.error
    with Ledger(studio.ledger_path) as ledger:
        child = ledger.image(job.result_id)
    assert child.operation == "fix" and child.parent_sha256 == made[0].image_sha256
    page = client.get("/jobs", headers=HTML).text
    assert "fix eyes" in page


# --- the guards -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/files/../ledger.db", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/ledger.db", "/files/..%2fledger.db",
    "/files/runs/../../../../etc/passwd", "/files//etc/passwd", "/static/../app.py", "/static/%2e%2e/app.py",
    "/thumbs/..%2f..%2fledger.db.jpg",
])
def test_path_traversal_is_refused(client: TestClient, studio: Studio, path: str) -> None:
    shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    res = client.get(path)
    assert res.status_code in (400, 404)
    assert b"SQLite" not in res.content and b"root:" not in res.content


def test_run_files_are_served_from_the_run_folder(client: TestClient, studio: Studio) -> None:
    run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
    res = client.get(f"/files/runs/{run_id}/run.json")
    assert res.status_code == 200 and res.json()["run_id"] == run_id


def test_an_oversized_upload_is_refused_while_it_streams(studio: Studio) -> None:
    app = create_app(studio, checker=None, max_body=200_000)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        big = portrait_png((600, 600)) + b"\0" * 300_000
        res = client.post("/api/references", files={"file": ("big.png", big, "image/png")},
                          data={"who": "Ada", "source": "own photo", "permission": "model release"})
        assert res.status_code == 413 and "too large" in res.json()["error"]

        def chunks():  # no Content-Length: the limit must hold while the body streams in
            for _ in range(40):
                yield b"x" * 10_000

        res = client.post("/api/references", content=chunks(), headers={"content-type": "multipart/form-data; boundary=zz"})
        assert res.status_code == 413
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.db.execute("SELECT COUNT(*) FROM rights").fetchone()[0] == 0


def test_a_reference_upload_needs_its_consent_record(client: TestClient, studio: Studio) -> None:
    photo = portrait_png()
    res = client.post("/api/references", files={"file": ("ref.png", photo, "image/png")}, data={"who": "Ada"})
    assert res.status_code == 403 and "who is shown" in res.json()["hint"]
    res = client.post("/api/references", files={"file": ("ref.txt", b"not an image", "text/plain")},
                      data={"who": "Ada", "source": "own", "permission": "release"})
    assert res.status_code == 422
    ok = client.post("/api/references", files={"file": ("ref.png", photo, "image/png")},
                     data={"who": "Ada Lovelace", "source": "own photo", "permission": "model release 2026-03-02"}).json()
    with Ledger(studio.ledger_path) as ledger:
        assert ledger.rights_for(ok["sha256"])["who"] == "Ada Lovelace"
    brief = {**ONE_MODEL, "references": [{"path": ok["path"], "rights": {"who": "Ada Lovelace", "source": "own photo",
                                                                        "permission": "model release 2026-03-02"}}]}
    data = client.post("/api/brief/preview", json={"brief": brief, "models": ["flux-2-pro"]}).json()
    assert data["ok"] and data["models"][0]["prompt"]


def test_without_a_token_only_loopback_host_names_are_served(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="http://evil.example") as rebound:
        res = rebound.get("/gallery")
        assert res.status_code == 400 and "loopback" in res.json()["error"]
    with TestClient(app, base_url="http://localhost:8765") as local:
        assert local.get("/gallery").status_code == 200


def test_with_a_token_every_request_must_carry_it(studio: Studio) -> None:
    token = "s3cret-token-for-tests"
    with TestClient(create_app(studio, token=token, checker=None), base_url="http://192.168.1.20:8765") as c:
        assert c.get("/gallery").status_code == 401
        assert c.get("/gallery?token=wrong-token-here").status_code == 401
        first = c.get(f"/gallery?token={token}")
        assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
        assert c.get("/gallery").status_code == 200  # the cookie now carries it
    with TestClient(create_app(studio, token=token, checker=None), base_url="http://192.168.1.20:8765") as c:
        assert c.get("/api/models", headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_a_cross_site_post_is_refused(client: TestClient, studio: Studio) -> None:
    res = client.post("/api/shoot", json={"brief": ONE_MODEL, "models": ["flux-1.1-pro"]},
                      headers={"origin": "http://evil.example"})
    assert res.status_code == 403
    res = client.post("/api/brief/preview", json={"brief": ONE_MODEL, "models": []}, headers={"origin": "http://127.0.0.1"})
    assert res.status_code == 200


def test_binding_off_loopback_needs_a_token() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(StudioError, match="spend your credits"):
        check_bind("0.0.0.0", None)
    with pytest.raises(StudioError, match="too short"):
        check_bind("0.0.0.0", "abc")
    check_bind("0.0.0.0", "a-long-enough-token")


def test_portrait_serve_refuses_a_public_address_without_a_token(studio: Studio) -> None:
    import typer
    from typer.testing import CliRunner

    from portrait_studio.cli.web import register

    cli = typer.Typer()
    register(cli)
    result = CliRunner().invoke(cli, ["--host", "0.0.0.0", "--no-open", "--home", str(studio.home)])
    assert result.exit_code != 0 and isinstance(result.exception, StudioError)
    assert "--token" in (result.exception.hint or "")


def test_portrait_serve_serves_the_studio_on_loopback(studio: Studio) -> None:
    import urllib.request

    from portrait_studio.web.server import ServerThread

    with ServerThread(create_app(studio, checker=None)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/gallery") as res:
            assert res.status == 200 and b"No images yet" in res.read()


def test_the_studio_answers_a_kept_alive_connection_at_once(studio: Studio) -> None:
    """uvicorn writes an answer's head and body separately; on a listening socket made with
    protocol 0, asyncio left Nagle on and every answer on a kept-alive connection (a browser's)
    waited ~40 ms for the client's delayed ACK."""
    import socket
    import time

    from portrait_studio.web.server import ServerThread

    with ServerThread(create_app(studio, checker=None)) as server, \
            socket.create_connection(("127.0.0.1", server.port)) as conn:
        ask = b"GET /api/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        took = []
        for _ in range(15):
            t0 = time.perf_counter()
            conn.sendall(ask)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            took.append(time.perf_counter() - t0)
    assert sorted(took)[len(took) // 2] < 0.02


def test_an_instruction_edit_from_the_detail_page_is_a_labelled_child(app, client: TestClient, studio: Studio) -> None:  # type: ignore[no-untyped-def]
    from portrait_studio.labels import verify

    _, made = shoot_into_ledger(studio, ["flux-2-pro"], [21])
    page = client.get(f"/images/{made[0].id}", headers=HTML).text
    assert 'data-url="/api/images/' in page and 'name="instruction"' in page and "cinematic" in page
    refused = client.post(f"/api/images/{made[0].id}/edit", json={"instruction": "", "look": ""})
    assert refused.status_code == 422 and "instruction" in refused.text
    minor = client.post(f"/api/images/{made[0].id}/edit", json={"instruction": "make her a 12-year-old girl"})
    assert minor.status_code == 422
    started = client.post(f"/api/images/{made[0].id}/edit", json={"instruction": "change the sweater to navy",
                                                                   "look": "", "model": "flux-2-pro@bfl",
                                                                   "sandbox": "always"})
    assert started.status_code == 200, started.text
    job = _wait(app, started.json()["job_id"])
    assert job.status == "done", job.error
    with Ledger(studio.ledger_path) as ledger:
        child = ledger.image(job.result_id)
        assert child.operation == "edit" and child.parent_sha256 == made[0].image_sha256
        assert child.out_path and verify(child.out_path).labelled
