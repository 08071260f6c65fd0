"""The web studio shared by a team, through its HTTP interface: signing in, roles per route, CSRF,
login throttling, the review step — and another team's images on no route at all."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _engine_helpers import starter
from _team_helpers import PASSWORD, Team, make_team, team_shoot
from _web_helpers import BRIEF
from portrait_studio.config import Studio
from portrait_studio.ledger import Ledger
from portrait_studio.web import create_app

HTML = {"accept": "text/html"}


class World:
    """Two teams in one studio; Acme has a finished shoot and a job."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        with Ledger(studio.ledger_path) as ledger:
            self.acme: Team = make_team(ledger, "Acme")
            self.other: Team = make_team(ledger, "Other")
            self.run_id, self.images = team_shoot(studio, self.acme.people["producer"], [11, 12])
            self.job_id = ledger.as_actor(self.acme.people["producer"]).add_job(
                "export", "export", {"image_id": self.images[0].id}, image_id=self.images[0].id).id
            self.tokens = {f"{t.name}/{role}": ledger.create_token(t.email(role), t.id)
                           for t in (self.acme, self.other) for role in t.people}


@pytest.fixture
def world(ledger_url: str, tmp_path: Path) -> World:
    return World(Studio(tmp_path / "home", environ={}, database=ledger_url))


@pytest.fixture
def app(world: World):  # type: ignore[no-untyped-def]
    return create_app(world.studio, checker=None, start_sandbox=starter(latency=0.05))


def client_for(app: Any, base_url: str = "http://127.0.0.1") -> TestClient:
    return TestClient(app, base_url=base_url, follow_redirects=False)


def sign_in(client: TestClient, email: str) -> str:
    """Sign in through the JSON API; returns the CSRF token the page would carry."""
    res = client.post("/api/login", json={"email": email, "password": PASSWORD})
    assert res.status_code == 200, res.text
    return str(res.json()["csrf"])


def test_a_team_studio_asks_everyone_to_sign_in(app: Any, world: World) -> None:
    with client_for(app) as c:
        page = c.get("/gallery", headers=HTML)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/gallery"
        assert c.get("/api/runs/" + world.run_id + "/progress").status_code == 401
        assert c.get("/login", headers=HTML).status_code == 200 and 'name="password"' in c.get("/login").text
        assert c.get("/static/studio.css").status_code == 200
        signed = c.post("/login", data={"email": world.acme.email("viewer"), "password": PASSWORD, "next": "/gallery"})
        assert signed.status_code == 303 and signed.headers["location"] == "/gallery"
        gallery = c.get("/gallery", headers=HTML)
        assert gallery.status_code == 200 and world.images[0].id in gallery.text
        assert "viewer@acme.test · viewer · Acme" in gallery.text and 'name="csrf-token"' in gallery.text
        assert c.post("/login", data={"email": "x@y.z", "password": "p", "next": "https://evil.test/"}).status_code == 401
        again = c.post("/login", data={"email": world.acme.email("viewer"), "password": PASSWORD,
                                       "next": "https://evil.test/"})
        assert again.headers["location"] == "/"  # never sent to another site


def test_the_session_cookie_is_httponly_samesite_and_secure_off_loopback(app: Any, world: World) -> None:
    with client_for(app) as c:
        cookie = c.post("/api/login", json={"email": world.acme.email("viewer"), "password": PASSWORD}).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    with client_for(app, "https://studio.acme.test") as c:  # a team studio answers off loopback (everyone signs in)
        cookie = c.post("/api/login", json={"email": world.acme.email("viewer"), "password": PASSWORD}).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
        assert c.get("/api/me").json()["email"] == world.acme.email("viewer")


def test_state_changing_requests_need_the_pages_csrf_token(app: Any, world: World) -> None:
    image = world.images[0].id
    with client_for(app) as c:
        csrf = sign_in(c, world.acme.email("reviewer"))
        refused = c.post(f"/api/images/{image}/review", json={"decision": "approved"})
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        wrong = c.post(f"/api/images/{image}/review", json={"decision": "approved"}, headers={"x-csrf-token": "nope"})
        assert wrong.status_code == 403
        ok = c.post(f"/api/images/{image}/review", json={"decision": "approved", "comment": "yes"},
                    headers={"x-csrf-token": csrf})
        assert ok.status_code == 200 and ok.json()["image"]["review"] == "approved"
    with client_for(app) as c:  # a script with an API token has no cookie to ride on: no CSRF token needed
        res = c.post(f"/api/images/{world.images[1].id}/review", json={"decision": "rejected", "comment": "too dark"},
                     headers={"authorization": "Bearer " + world.tokens["Acme/reviewer"]})
        assert res.status_code == 200 and res.json()["review"]["reviewer"] == world.acme.email("reviewer")


def test_a_viewer_cannot_spend(app: Any, world: World) -> None:
    viewer = {"authorization": "Bearer " + world.tokens["Acme/viewer"]}
    image = world.images[0].id
    with client_for(app) as c:
        for url, body in (("/api/shoot", {"brief": BRIEF.model_dump(mode="json"), "models": ["flux-1.1-pro"], "seeds": 1}),
                          (f"/api/runs/{world.run_id}/vary", {"element": "lighting", "value": "clamshell"}),
                          (f"/api/images/{image}/fix", {"region": "eyes"}),
                          (f"/api/images/{image}/upscale", {"scale": 2})):
            res = c.post(url, json=body, headers=viewer)
            assert res.status_code == 403, url
            assert "viewer in Acme and may not spend" in res.json()["error"]
        assert c.get("/gallery", headers={**viewer, **HTML}).status_code == 200  # but sees the team's work
    with Ledger(world.studio.ledger_path) as ledger:
        assert len(ledger.runs()) == 1 and len(ledger.jobs()) == 1  # nothing was recorded or queued


def test_a_producer_cannot_approve_pick_or_export(app: Any, world: World) -> None:
    producer = {"authorization": "Bearer " + world.tokens["Acme/producer"]}
    image = world.images[0].id
    with client_for(app) as c:
        for url, body in ((f"/api/images/{image}/review", {"decision": "approved"}), (f"/api/images/{image}/pick", {}),
                          (f"/api/images/{image}/export", {}), ("/api/exports/approved", {})):
            res = c.post(url, json=body, headers=producer)
            assert res.status_code == 403 and "producer in Acme and may not pick, approve" in res.json()["error"], url
    with Ledger(world.studio.ledger_path) as ledger:
        assert ledger.reviews(image) == []


def _fill(template: str, world: World, image_id: str, run_id: str, job_id: str, file: str) -> str:
    values = {"image_id": image_id, "run_id": run_id, "job_id": job_id, "path": file,
              "name": "rembrandt-studio-headshot"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)


BODIES: dict[str, Any] = {
    "/api/images/{image_id}/review": {"decision": "approved", "comment": "mine now"},
    "/api/images/{image_id}/fix": {"region": "eyes"},
    "/api/images/{image_id}/upscale": {"scale": 2},
    "/api/images/{image_id}/edit": {"instruction": "soften the fill light"},
    "/api/runs/{run_id}/vary": {"element": "lighting", "value": "clamshell"},
    "/api/exports/approved": None,  # filled with Acme's run id below
    "/api/shoot": {"brief": {}, "models": []},
    "/api/brief/preview": {"brief": {}, "models": []},
    "/api/brief/save": {"brief": {}, "name": "x"},
    "/api/login": {"email": "owner@other.test", "password": PASSWORD},
}


def test_a_user_never_sees_another_teams_images_on_any_route(app: Any, world: World) -> None:
    """Other's owner (every permission) tries every route of the studio with Acme's ids: each answers
    404 where it names Acme's things, and no answer anywhere carries an Acme id or hash."""
    image, run, job = world.images[0], world.run_id, world.job_id
    run_file = str((Path(world.studio.runs_dir) / run / "01.png").relative_to(world.studio.home))
    secrets = {run, job, *(i.id for i in world.images), *(i.image_sha256 for i in world.images), "acme.test"}
    bound = {"image_id", "run_id", "job_id", "path"}
    routes = [r for r in app.fastapi.routes if hasattr(r, "methods") and r.path not in ("/static", "/favicon.ico")]
    tried: set[tuple[str, str]] = set()
    headers = {"authorization": "Bearer " + world.tokens["Other/owner"], "accept": "application/json"}
    with client_for(app) as c:
        for route in routes:
            for method in sorted(route.methods - {"HEAD"}):
                url = _fill(route.path, world, image.id, run, job, run_file)
                body = BODIES.get(route.path, {})
                if route.path == "/api/exports/approved":
                    body = {"run_id": run}
                res = c.request(method, url, json=body if method == "POST" else None, headers=headers)
                tried.add((method, route.path))
                names_acme = any("{" + p in route.path for p in bound) or route.path == "/api/exports/approved"
                if names_acme:
                    assert res.status_code == 404, (method, route.path, res.status_code, res.text[:300])
                asked = url + json.dumps(body)  # an error may echo the id it was given; nothing else of Acme's
                leaked = [s for s in secrets if s in res.text and s not in asked]
                assert leaked == [], (method, route.path, leaked)
        # the HTML pages too, as a browser would ask for them
        for url in ("/", "/gallery", "/jobs", f"/images/{image.id}", f"/runs/{run}", f"/runs/{run}/compare",
                    f"/jobs/{job}", f"/gallery?run={run}", f"/thumbs/{image.id}.jpg", f"/images/{image.id}/file"):
            res = c.get(url, headers={**headers, **HTML})
            assert not [s for s in secrets if s in res.text and s not in url], url
    every = {(m, r.path) for r in routes for m in r.methods - {"HEAD"}}
    assert tried == every
    with Ledger(world.studio.ledger_path) as ledger:
        assert ledger.reviews(image.id) == [] and len(ledger.jobs()) == 1  # nothing done to Acme's work


def test_login_brute_force_is_rate_limited(app: Any, world: World) -> None:
    email = world.acme.email("producer")
    with client_for(app) as c:
        for n in range(5):
            res = c.post("/login", data={"email": email, "password": f"guess {n}", "next": "/"}, headers=HTML)
            assert res.status_code == 401 and "wrong email or password" in res.text
        res = c.post("/login", data={"email": email, "password": PASSWORD, "next": "/"}, headers=HTML)
        assert res.status_code == 429 and int(res.headers["retry-after"]) > 60
        assert "too many failed sign-ins" in res.text
        api = c.post("/api/login", json={"email": email, "password": PASSWORD})
        assert api.status_code == 429 and api.json()["type"] == "TooManyAttempts"
        assert c.post("/api/login", json={"email": world.acme.email("viewer"), "password": PASSWORD}).status_code == 200


def test_review_then_ship_only_approved_labelled_images_with_their_audit_record(app: Any, world: World) -> None:
    approved, rejected = world.images
    with client_for(app) as c:
        producer = {"authorization": "Bearer " + world.tokens["Acme/producer"]}
        reviewer = {"authorization": "Bearer " + world.tokens["Acme/reviewer"]}
        refused = c.post(f"/api/images/{approved.id}/export", json={}, headers=reviewer)
        assert refused.status_code == 409 and "has not been approved" in refused.json()["error"]
        c.post(f"/api/images/{approved.id}/review", json={"decision": "approved", "comment": "lovely"}, headers=reviewer)
        c.post(f"/api/images/{rejected.id}/review", json={"decision": "rejected", "comment": "eyes"}, headers=reviewer)
        page = c.get("/gallery?review=approved", headers={**producer, **HTML}).text
        assert approved.id in page and rejected.id not in page
        assert rejected.id in c.get("/gallery?review=rejected", headers={**producer, **HTML}).text
        detail = c.get(f"/images/{rejected.id}", headers={**producer, **HTML}).text
        assert "rejected" in detail and "eyes" in detail and 'id="review-form"' not in detail  # producers see, not decide
        started = c.post("/api/exports/approved", json={"run_id": world.run_id}, headers=reviewer)
        assert started.status_code == 200, started.text
        job = app.fastapi.state.jobs.wait(started.json()["job_id"], timeout=120)
        assert job.status == "done", job
        folder = world.studio.home / str(job.result_id)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert [e["image_id"] for e in manifest["images"]] == [approved.id]
        assert manifest["exported_by"] == world.acme.email("reviewer")
        shipped = folder / manifest["images"][0]["file"]
        record = json.loads((folder / manifest["images"][0]["audit"]).read_text())
        assert record["image"]["id"] == approved.id and record["shipped"]["labelled"]
        assert record["reviews"][0]["decision"] == "approved" and record["reviews"][0]["comment"] == "lovely"
        from portrait_studio.labels import verify

        assert verify(shipped).labelled
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["manifest.json", shipped.name, shipped.name + ".audit.json", shipped.name + ".json"])
        served = c.get(f"/files/{job.result_id}/manifest.json", headers=producer)  # the jobs page links it
        assert served.status_code == 200 and served.json()["images"][0]["image_id"] == approved.id
        other = {"authorization": "Bearer " + world.tokens["Other/owner"]}
        assert c.get(f"/files/{job.result_id}/manifest.json", headers=other).status_code == 404
        # a later rejection withdraws the approval
        c.post(f"/api/images/{approved.id}/review", json={"decision": "rejected", "comment": "client changed mind"},
               headers=reviewer)
        assert c.post("/api/exports/approved", json={}, headers=reviewer).status_code == 409


def test_a_producer_shoots_as_a_member_and_the_run_is_the_teams(app: Any, world: World) -> None:
    headers = {"authorization": "Bearer " + world.tokens["Acme/producer"]}
    with client_for(app) as c:
        res = c.post("/api/shoot", json={"brief": BRIEF.model_dump(mode="json"), "models": ["flux-1.1-pro"],
                                         "seeds": 2, "sandbox": "always", "project": "spring"}, headers=headers)
        assert res.status_code == 200, res.text
        job = app.fastapi.state.jobs.wait(res.json()["job_id"], timeout=120)
        assert job.status == "done", job
        run_id = res.json()["run_id"]
        other = {"authorization": "Bearer " + world.tokens["Other/producer"]}
        assert c.get(f"/api/runs/{run_id}/progress", headers=other).status_code == 404
        assert c.get(f"/api/jobs/{job.id}", headers=other).status_code == 404
    with Ledger(world.studio.ledger_path) as ledger:
        run = ledger.run(run_id)
        producer = world.acme.people["producer"]
        assert (run.created_by, run.team_id, run.project) == (producer.user_id, world.acme.id, "spring")
        assert {(i.created_by, i.team_id) for i in ledger.images(run_id=run_id)} == {(producer.user_id, world.acme.id)}
        assert ledger.job(job.id).user_id == producer.user_id


def test_signing_out_ends_the_session(app: Any, world: World) -> None:
    with client_for(app) as c:
        csrf = sign_in(c, world.acme.email("viewer"))
        assert c.get("/api/me").json()["email"] == world.acme.email("viewer")
        assert c.post(f"/logout?csrf={csrf}").status_code == 303
        assert c.get("/api/me").status_code == 401


def test_the_one_person_studio_has_no_sign_in(studio: Studio) -> None:
    with client_for(create_app(studio, checker=None)) as c:
        assert c.get("/gallery", headers=HTML).status_code == 200
        assert c.get("/api/me").json() == {"user": None}
        assert "Sign out" not in c.get("/", headers=HTML).text
        started = time.monotonic()
        assert c.post("/api/brief/preview", json={"brief": {}, "models": []}).status_code == 200  # no CSRF asked
        assert time.monotonic() - started < 30
