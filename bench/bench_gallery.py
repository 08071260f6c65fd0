"""How fast is the gallery's first page with 10,000 images in the ledger? Target: under 300 ms.

Fills a fresh studio with 10,000 tiny images (bulk inserts through the ledger's own schema,
a checklist for every third image), then renders GET /gallery through FastAPI's TestClient:
cold (a new app and a new ledger connection) and warm (repeat requests), plus a filtered
page and the first page's 48 thumbnails made cold and served warm.

    python bench/bench_gallery.py [--images 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from PIL import Image

from portrait_studio.config import Studio
from portrait_studio.ledger import Ledger, store_image

TARGET_MS = 300.0
MODELS = ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra", "flux-2-max"]


def fill(studio: Studio, count: int) -> None:
    with Ledger(studio.ledger_path) as ledger:
        runs = [ledger.create_run("shoot", name=f"bench {n}", out_dir=str(studio.runs_dir / f"r{n}")) for n in range(count // 100)]
        now = time.time()
        with ledger.transaction() as db:
            for n in range(count):
                im = Image.new("RGB", (24, 32), ((n * 7) % 256, (n * 13) % 256, (n * 29) % 256))
                buf = BytesIO()
                im.save(buf, "PNG")
                sha, path = store_image(studio.images_dir, buf.getvalue() + n.to_bytes(4, "big"), "png")
                run_id = runs[n // 100]
                model = MODELS[n % len(MODELS)]
                req_id = f"req_bench{n:06d}"
                db.execute(
                    "INSERT INTO requests (id, run_id, position, idempotency_key, model, provider, seed, request_json,"
                    " estimated_usd, status, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (req_id, run_id, n % 100, hashlib.sha1(req_id.encode()).hexdigest(), model, "bfl", n, "{}", 0.04,
                     "done", now),
                )
                db.execute("INSERT INTO images (sha256, path, width, height, format, created_at) VALUES (?,?,?,?,?,?)",
                           (sha, str(path), 24, 32, "png", now + n * 1e-3))
                db.execute(
                    "INSERT INTO results (id, run_id, request_id, image_sha256, model, provider, seed, cost_usd,"
                    " cost_credits, sandbox, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (f"img_bench{n:06d}", run_id, req_id, sha, model, "bfl", n, 0.04, 4, 1, now + n * 1e-3),
                )
                if n % 3 == 0:
                    db.execute("INSERT INTO checks (image_sha256, overall, score, checklist_json, created_at)"
                               " VALUES (?,?,?,?,?)", (sha, ("pass", "warn", "fail")[n % 9 // 3], 90.0, "{}", now))


def timed(client, url: str) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    res = client.get(url, headers={"accept": "text/html"})
    elapsed = (time.perf_counter() - start) * 1000
    assert res.status_code == 200, res.text[:500]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from portrait_studio.web import create_app

    with tempfile.TemporaryDirectory() as home:
        studio = Studio(home, environ={})
        t0 = time.perf_counter()
        fill(studio, args.images)
        print(f"filled {args.images} images in {time.perf_counter() - t0:.1f}s")

        with TestClient(create_app(studio, checker=None), base_url="http://127.0.0.1") as client:
            cold = timed(client, "/gallery")
            page = client.get("/gallery", headers={"accept": "text/html"}).text
            assert page.count('class="tile"') == 48, "the first page should show 48 tiles"
            warm = [timed(client, "/gallery") for _ in range(10)]
            filtered = [timed(client, "/gallery?model=flux-2-pro&check=pass") for _ in range(5)]
            last_page = timed(client, f"/gallery?page={args.images // 48}")
            ids = [f"img_bench{n:06d}" for n in range(args.images - 48, args.images)]
            t = time.perf_counter()
            for image_id in ids:
                assert client.get(f"/thumbs/{image_id}.jpg").status_code == 200
            thumbs_cold = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            for image_id in ids:
                client.get(f"/thumbs/{image_id}.jpg")
            thumbs_warm = (time.perf_counter() - t) * 1000

        warm_ms = statistics.median(warm)
        print(f"first page, cold (new app, new connection): {cold:7.1f} ms   ratio to {TARGET_MS:.0f} ms target: {cold / TARGET_MS:.2f}")
        print(f"first page, warm (median of 10):            {warm_ms:7.1f} ms   ratio to {TARGET_MS:.0f} ms target: {warm_ms / TARGET_MS:.2f}")
        print(f"filtered page (model + check, median of 5): {statistics.median(filtered):7.1f} ms   ratio: {statistics.median(filtered) / TARGET_MS:.2f}")
        print(f"last page:                                  {last_page:7.1f} ms   ratio: {last_page / TARGET_MS:.2f}")
        print(f"48 thumbnails: made cold {thumbs_cold:.0f} ms, served warm {thumbs_warm:.0f} ms")


if __name__ == "__main__":
    main()
