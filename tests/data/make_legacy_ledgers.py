"""Make the legacy ledgers in tests/data with the pre-SQLAlchemy code (run at commit b04656b):

    ledger-v1.db          only the first migration (m001_initial), money on results
    ledger-v2-engine.db   m001 + m002 (the engine): a sandbox shoot, a compare with a failed and a
                          skipped request, a fix, files, labels, checks, rights, identity

    cd <checkout at b04656b> && PYTHONPATH=src python tests/data/make_legacy_ledgers.py tests/data /tmp/home
"""
import shutil
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _engine_helpers import on_engine
from _web_helpers import portrait_png
from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.ledger import MIGRATIONS, Ledger
from portrait_studio.prompting import compile_brief
from portrait_studio.records import Cost, Result, Ticket
from portrait_studio.shoot import plan_shoot

out = Path(sys.argv[1])
home = Path(sys.argv[2])
studio = Studio(home)
brief = load_brief(example_brief_path("rembrandt-studio-headshot"))

# v2: a real engine shoot on the sandbox (runs, requests with money, results, images, files, labels, steps)
plan = plan_shoot(brief, ["flux-1.1-pro", "flux-2-pro"], [11, 12]).to_plan()
async def work(engine):
    rid = engine.record(plan, budget_usd=2.0)
    await engine.execute(rid)
    return rid
rid = on_engine(studio, ["bfl"], work)
with Ledger(studio.ledger_path) as led:
    imgs = led.images(run_id=rid)
    led.pick(rid, imgs[0].id)
    led.record_checks(imgs[0].image_sha256, "pass", 0.93, {"eyes": {"status": "pass"}})
    led.record_rights(imgs[1].image_sha256, "Eileen Collins", "NASA", "public domain", recorded_by="cli")
    led.record_identity(rid, 0, imgs[0].image_sha256, 0.31, "ok", details={"step": "measure"})
    # a failed, charged request and a skipped one, in a second run with a budget
    run2 = led.create_run("compare", name="second", budget_usd=0.05)
    reqs = [compile_brief(brief, "flux-1.1-pro", seed=s) for s in (5, 6, 7)]
    led.add_requests(run2, reqs)
    led.reserve(reqs[0].request_id, 0.04, limit_usd=0.05, run_id=run2, sandbox=True)
    led.record_accepted(Ticket(request_id=reqs[0].request_id, provider="bfl", task_id="t-failed"))
    led.settle(reqs[0].request_id, Cost(credits=4, usd=0.04))
    led.set_request_status(reqs[0].request_id, "failed", "Moderated: content")
    led.set_request_status(reqs[1].request_id, "skipped", "over budget")
    res = Result(request_id="x", provider="bfl", model="flux-fill-pro", image=portrait_png((32, 32), 9), seed=3, cost=Cost(credits=5, usd=0.05))
    led.record_image(res, images_dir=studio.images_dir, run_id=None, request_id=None, parent_sha256=imgs[0].image_sha256, operation="fix", operation_details={"region": "eyes"})
    led.record_file(home / "exports" / "x.png", "f" * 64, imgs[0].id, kind="export", labelled=True)
    led.record_label(imgs[0].image_sha256, {"path": "exports/x.png"}, "signed")
db = sqlite3.connect(studio.ledger_path)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.execute("VACUUM")
db.close()
shutil.copyfile(studio.ledger_path, out / "ledger-v2-engine.db")

# v1: only the first migration, with money on results (before the engine)
p = out / "ledger-v1.db"
p.unlink(missing_ok=True)
db = sqlite3.connect(p, isolation_level=None)
db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
db.execute("BEGIN")
MIGRATIONS[0](db)
db.execute("INSERT INTO _migrations VALUES ('m001_initial', 1700000000)")
db.execute("INSERT INTO runs (id, kind, created_at, name, budget_usd, status) VALUES ('run_old', 'shoot', 1700000001, 'first shoot', 1.0, 'done')")
for n, st in enumerate(["done", "done", "failed"]):
    req = compile_brief(brief, "flux-1.1-pro", seed=n).model_copy(update={"run_id": "run_old", "request_id": f"req_old{n}"})
    db.execute("INSERT INTO requests (id, run_id, position, idempotency_key, model, provider, seed, request_json, estimated_usd, status, task_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
               (f"req_old{n}", "run_old", n, f"k{n}", "flux-1.1-pro", "bfl", n, req.model_dump_json(), 0.04, st, f"task{n}", 1700000002))
for n in range(2):
    db.execute("INSERT INTO images (sha256, path, width, height, format, created_at) VALUES (?,?,?,?,?,?)", (f"{n}" * 64, f"/old/{n}.png", 8, 8, "png", 1700000003))
    db.execute("INSERT INTO results (id, run_id, request_id, image_sha256, model, provider, seed, cost_usd, cost_credits, sandbox, picked, out_path, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
               (f"img_old{n}", "run_old", f"req_old{n}", f"{n}" * 64, "flux-1.1-pro", "bfl", n, 0.04, 4, 0, int(n == 1), f"/old/run/{n}.png", 1700000004 + n))
db.execute("INSERT INTO checks (image_sha256, overall, score, checklist_json, created_at) VALUES (?,?,?,?,?)", ("0" * 64, "warn", 0.5, "{}", 1700000005))
db.execute("INSERT INTO labels (image_sha256, info_json, c2pa_status, created_at) VALUES (?,?,?,?)", ("0" * 64, "{}", "missing", 1700000005))
db.execute("INSERT INTO rights (id, image_sha256, who, source, permission, recorded_by, recorded_at) VALUES ('rights_old', 'cafe', 'Ann', 'own photo', 'model release', 'cli', 1700000006)")
db.execute("INSERT INTO identity (run_id, image_sha256, shot, distance, status, created_at) VALUES ('run_old', ?, 0, 0.2, 'ok', 1700000007)", ("0" * 64,))
db.execute("COMMIT")
db.execute("VACUUM")
db.close()
print("ok")
