"""Accounts, roles and teams in the ledger itself, on SQLite and PostgreSQL: who may do what, who did
what, and that a team never sees another team's work."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from _team_helpers import PASSWORD, make_team, record_shoot
from portrait_studio.errors import Forbidden, LedgerError, LoginRequired, TooManyAttempts, UsageError
from portrait_studio.ledger import Ledger


def test_passwords_are_argon2_hashes_and_tokens_are_kept_only_as_digests(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        stored = [r[0] for r in ledger.db.execute("SELECT password_hash FROM users")]
        assert stored and all(h.startswith("$argon2id$") for h in stored)
        assert not any(PASSWORD in h for h in stored)
        token = ledger.create_token(team.email("producer"), team.id, name="script")
        hashes = [r[0] for r in ledger.db.execute("SELECT token_hash FROM api_tokens")]
        assert token.startswith("pst_") and token not in hashes and len(hashes[0]) == 64
        assert ledger.authenticate_token(token).role == "producer"
        with pytest.raises(UsageError, match="password"):
            ledger.create_user("short@acme.test", password="short")


def test_signing_in_gives_a_session_and_a_csrf_token(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        make_team(ledger, "Acme")
        actor, secret, csrf = ledger.login("Reviewer@Acme.test ", PASSWORD, client="10.0.0.5")
        assert actor.role == "reviewer" and actor.team_name == "Acme"
        assert ledger.session(secret) == (actor, csrf)
        assert ledger.db.execute("SELECT COUNT(*) FROM sessions WHERE id = ?", (secret,)).fetchone()[0] == 0  # hashed
        ledger.end_session(secret)
        assert ledger.session(secret) is None
        with pytest.raises(LoginRequired, match="wrong email or password"):
            ledger.login("reviewer@acme.test", "not the password", client="10.0.0.5")
        with pytest.raises(LoginRequired, match="wrong email or password"):
            ledger.login("nobody@acme.test", PASSWORD, client="10.0.0.5")  # same answer: no account enumeration


def test_login_brute_force_is_throttled_for_every_server_on_the_database(ledger_url: str) -> None:
    """Five wrong passwords, some through each of two 'servers': then even the right one is refused."""
    with Ledger(ledger_url) as one, Ledger(ledger_url) as two:
        make_team(one, "Acme")
        for n in range(5):
            with pytest.raises(LoginRequired):
                (one if n % 2 else two).login("viewer@acme.test", f"guess {n}", client=f"10.0.0.{n}")
        with pytest.raises(TooManyAttempts) as caught:
            one.login("viewer@acme.test", PASSWORD, client="10.0.0.99")
        assert 800 < caught.value.retry_after <= 900
        assert one.login("producer@acme.test", PASSWORD, client="10.0.0.99")[0].role == "producer"  # others unaffected


def test_one_address_guessing_many_accounts_is_throttled_too(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        make_team(ledger, "Acme")
        for n in range(ledger.throttle.per_client):
            with pytest.raises(LoginRequired):
                ledger.login(f"user{n}@acme.test", "guess", client="203.0.113.7")
        with pytest.raises(TooManyAttempts):
            ledger.login("owner@acme.test", PASSWORD, client="203.0.113.7")
        assert ledger.login("owner@acme.test", PASSWORD, client="198.51.100.1")[0].role == "owner"


def test_a_viewer_cannot_spend_and_a_producer_cannot_approve(ledger_url: str, tmp_path: Path) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        producer = ledger.as_actor(team.people["producer"])
        run, images = record_shoot(producer, tmp_path / "img")
        viewer = ledger.as_actor(team.people["viewer"])
        from portrait_studio.brief import example_brief_path, load_brief
        from portrait_studio.prompting import compile_brief

        req = compile_brief(load_brief(example_brief_path("rembrandt-studio-headshot")), "flux-1.1-pro", seed=77)
        producer.add_requests(run, [req])
        with pytest.raises(Forbidden, match="viewer in Acme and may not spend"):
            viewer.reserve(req.request_id, 0.04, limit_usd=None, run_id=run)
        with pytest.raises(Forbidden, match="may not spend"):
            viewer.create_run("shoot")  # refused before anything is recorded
        with pytest.raises(Forbidden, match="may not spend"):
            viewer.add_requests(run, [req])
        with pytest.raises(Forbidden, match="may not pick, approve"):
            producer.review(images[0].id, "approved")
        with pytest.raises(Forbidden):
            producer.pick(run, images[0].id)
        with pytest.raises(Forbidden):
            ledger.as_actor(team.people["reviewer"]).reserve(req.request_id, 0.04, limit_usd=None, run_id=run)
        reviewer = ledger.as_actor(team.people["reviewer"])
        assert reviewer.review(images[0].id, "approved", "good light").decision == "approved"
        with pytest.raises(UsageError, match="needs a comment"):
            reviewer.review(images[1].id, "rejected")
        assert ledger.request(req.request_id).status == "planned"  # nothing was reserved


def test_only_owners_manage_members_budgets_and_tokens(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        producer = ledger.as_actor(team.people["producer"])
        with pytest.raises(Forbidden):
            producer.set_budget(team.id, 1000)
        with pytest.raises(Forbidden):
            producer.add_person(team.id, "friend@acme.test", "owner", password=PASSWORD)
        with pytest.raises(Forbidden):
            producer.create_token(team.email("reviewer"), team.id)
        producer.create_token(team.email("producer"), team.id)  # their own is fine
        owner = ledger.as_actor(team.people["owner"])
        assert owner.set_budget(team.id, 25, period="day").limit_usd == 25
        with pytest.raises(UsageError, match="at least one owner"):
            owner.add_member(team.id, team.email("owner"), "viewer")


def test_every_row_records_who_did_it(ledger_url: str, tmp_path: Path) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        producer, reviewer = team.people["producer"], team.people["reviewer"]
        run, images = record_shoot(ledger.as_actor(producer), tmp_path / "img")
        as_producer = ledger.as_actor(producer)
        as_producer.record_rights("ab" * 32, "Ann", "her own photo", "model release")
        as_producer.record_label(images[0].image_sha256, {"caption": "x"}, "signed")
        as_producer.record_file(tmp_path / "out.png", "cd" * 32, images[0].id, labelled=True)
        as_reviewer = ledger.as_actor(reviewer)
        as_reviewer.pick(run, images[0].id)
        as_reviewer.review(images[0].id, "approved", "yes")
        q = ledger.db.execute
        assert q("SELECT created_by, team_id FROM runs").fetchall() == [(producer.user_id, team.id)]
        assert set(q("SELECT user_id, team_id FROM requests").fetchall()) == {(producer.user_id, team.id)}
        assert set(q("SELECT created_by, team_id FROM results").fetchall()) == {(producer.user_id, team.id)}
        assert q("SELECT picked_by FROM results WHERE picked = 1").fetchone()[0] == reviewer.user_id
        assert q("SELECT user_id, team_id, recorded_by FROM rights").fetchone() == (producer.user_id, team.id, producer.email)
        assert q("SELECT created_by FROM labels").fetchone()[0] == producer.user_id
        assert q("SELECT created_by FROM files").fetchone()[0] == producer.user_id
        assert q("SELECT user_id, decision, comment FROM reviews").fetchone() == (reviewer.user_id, "approved", "yes")
        assert as_reviewer.reviews(images[0].id)[0].reviewer == reviewer.email


def test_a_team_never_sees_another_teams_work(ledger_url: str, tmp_path: Path) -> None:
    with Ledger(ledger_url) as ledger:
        acme, other = make_team(ledger, "Acme"), make_team(ledger, "Other")
        a = ledger.as_actor(acme.people["producer"])
        run, images = record_shoot(a, tmp_path / "img", out_dir=tmp_path / "run")
        image = images[0]
        a.record_checks(image.image_sha256, "pass", 0.9, {"eyes": "pass"})
        a.record_label(image.image_sha256, {"caption": "x"}, "signed")
        a.record_rights("ef" * 32, "Ann", "own photo", "release")
        a.record_file(tmp_path / "run" / "00.png", "12" * 32, image.id, labelled=True)
        job = a.add_job("shoot", "a shoot", {"run_id": run}, run_id=run)
        b = ledger.as_actor(other.people["owner"])
        for attempt in (lambda: b.run(run), lambda: b.run(run[:8]), lambda: b.image(image.id),
                        lambda: b.image(image.image_sha256[:10]), lambda: b.image(str(tmp_path / "run" / "00.png")),
                        lambda: b.request(images[0].request_id), lambda: b.job(job.id), lambda: b.reviews(image.id),
                        lambda: b.identity(run)):
            with pytest.raises(LedgerError):
                attempt()
        assert b.runs() == [] and b.images() == [] and b.jobs() == [] and b.run_choices() == []
        assert b.gallery(run_id=None, model=None, seed=None, check=None, picked=None, limit=10, offset=0) == ([], 0)
        assert b.requests(run) == [] and b.models_used() == [] and b.result_ids(run) == []
        assert b.checks(image.image_sha256) is None and b.label(image.image_sha256) is None
        assert b.rights_for("ef" * 32) is None and b.file(tmp_path / "run" / "00.png") is None
        assert b.files_for(image.id) == [] and not b.is_studio_output(image.path)
        assert b.image_for_file(image.path, image.image_sha256) is None  # so another team's output needs consent
        assert b.spent().usd == 0 and b.spent(sandbox=True).usd == 0
        assert b.job_for_run(run) is None and b.children(image.image_sha256) == []
        with pytest.raises(LedgerError):
            b.team(acme.id)
        assert [t.name for t in b.teams()] == ["Other"]
        with pytest.raises(LedgerError):
            b.members(acme.id)
        # and the team that made it sees it all
        assert a.run(run).id == run and a.image(image.id).check_overall == "pass" and a.job(job.id).id == job.id


def test_removing_a_member_ends_their_sessions_and_tokens(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        team = make_team(ledger, "Acme")
        token = ledger.create_token(team.email("viewer"), team.id)
        _, secret, _ = ledger.login(team.email("viewer"), PASSWORD, client="x")
        ledger.as_actor(team.people["owner"]).remove_member(team.id, team.email("viewer"))
        assert ledger.session(secret) is None
        with pytest.raises(LoginRequired):
            ledger.authenticate_token(token)


def test_the_first_team_adopts_the_work_of_the_one_person_studio(ledger_url: str, tmp_path: Path) -> None:
    with Ledger(ledger_url) as ledger:
        run, images = record_shoot(ledger, tmp_path / "img")  # made before accounts: no owner
        team = make_team(ledger, "Acme")
        assert ledger.as_actor(team.people["viewer"]).runs() == []
        assert ledger.adopt_unowned(team.id) == 1
        assert [r.id for r in ledger.as_actor(team.people["viewer"]).runs()] == [run]
        assert ledger.as_actor(team.people["viewer"]).image(images[0].id).id == images[0].id


def test_concurrent_sign_ins_each_get_their_own_session(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        make_team(ledger, "Acme")
        secrets: list[str] = []

        def sign_in(role: str) -> None:
            secrets.append(ledger.login(f"{role}@acme.test", PASSWORD, client="x")[1])

        threads = [threading.Thread(target=sign_in, args=(r,)) for r in ("owner", "producer", "reviewer", "viewer") * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(secrets)) == 8 and all(ledger.session(s) for s in secrets)
