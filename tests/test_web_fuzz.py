"""The web API fuzzed from its own OpenAPI schema (schemathesis) on loopback: no request gets a 500.

The studio under test holds runs, images, an uploaded reference with its rights record and a
key, so generated ids, paths and briefs meet real rows and files. Every answer is counted by
status; the counts are what docs/reliability-web.md reports.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from _web_helpers import portrait_png, shoot_into_ledger  # noqa: E402
from portrait_studio.config import Studio  # noqa: E402
from portrait_studio.web import create_app  # noqa: E402
from portrait_studio.web.server import ServerThread  # noqa: E402
from portrait_studio.web.streams import ProgressStreams  # noqa: E402

SECRET = "bfl-fuzz-secret-0123456789"
EXAMPLES = int(os.environ.get("PORTRAIT_FUZZ_EXAMPLES", "40"))
COUNTS: dict[str, Counter[str]] = {}
"""Answers by status, per fuzzing test: what docs/reliability-web.md reports."""


def _count(test: str, status: int) -> None:
    COUNTS.setdefault(test, Counter())[str(status)] += 1
REPORT = Path(__file__).resolve().parents[1] / "test-artifacts" / "web-fuzz.json"


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Studio]]:
    home = tmp_path_factory.mktemp("fuzz") / "studio"
    studio = Studio(home, environ={})  # no keys in the environment: shoots go to the sandbox
    studio.set_key("replicate", SECRET)  # a key the fuzzer must never see
    shoot_into_ledger(studio, ["flux-1.1-pro", "flux-2-pro"], [1, 2])
    shoot_into_ledger(studio, ["flux-1.1-pro"], [3], out_dir=home.parent)  # --out above the studio
    import httpx

    from _engine_helpers import starter

    app = create_app(studio, checker=None, start_sandbox=starter(latency=0.05),
                     streams=ProgressStreams(idle_timeout_s=0.5, max_age_s=3.0))
    with ServerThread(app) as server:
        stored = httpx.post(f"{server.url}/api/references", files={"file": ("ref.png", portrait_png(shade=3), "image/png")},
                            data={"who": "Ada", "source": "own photo", "permission": "model release"})
        assert stored.status_code == 200
        yield server, studio
    app.fastapi.state.jobs.shutdown(wait=True)
    jobs = app.fastapi.state.jobs.jobs()
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({
        "cases": sum(sum(c.values()) for c in COUNTS.values()),
        "by_test": {test: {"cases": sum(c.values()), **dict(sorted(c.items()))} for test, c in COUNTS.items()},
        "jobs": dict(Counter(f"{j.kind} {j.status}" for j in jobs)),
        "job_errors": sorted({j.error or "" for j in jobs if j.status == "failed"}),
    }, indent=2))


def _operations(server: ServerThread) -> list:  # type: ignore[type-arg]
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_gets_a_server_error_or_a_secret(studio_server: tuple[ServerThread, Studio], mode: str) -> None:
    """Every operation, with data that fits its schema (positive) and data that does not (negative)."""
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    server, _ = studio_server
    failures: list[str] = []
    operations = _operations(server)
    assert len(operations) >= 25  # every route, pages included, is in the schema

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=server.url, timeout=20)
            _count(f"schema {mode}", response.status_code)
            body = response.content
            bad = (response.status_code >= 500 or SECRET.encode() in body or body.startswith(b"SQLite format")
                   or b"Traceback" in body)
            if bad:
                failures.append(f"{case.method} {case.formatted_path} {case.query or ''} -> {response.status_code} {body[:200]!r}")
            assert not bad, failures[-1]

        try:
            run()
        except AssertionError:
            pass  # recorded above; keep fuzzing the other operations
        except Unsatisfiable:
            pass  # no data breaks this operation's schema (a page without parameters): nothing negative to send
        except Exception as exc:  # a generation problem is reported with its operation
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}")
    assert failures == []


def _allowed_bodies(studio: Studio) -> set[bytes]:
    """The bytes of every file the studio may serve: its images, their run-folder copies, run files."""
    from portrait_studio.ledger import Ledger

    allowed: set[bytes] = set()
    with Ledger(studio.ledger_path) as ledger:
        for image in ledger.images(limit=1000):
            allowed |= {Path(p).read_bytes() for p in (image.path, image.out_path) if p}
        for run in ledger.runs(limit=100):
            folder = Path(run.out_dir or "")
            allowed |= {p.read_bytes() for p in folder.glob("run.json")}
    return allowed


def test_the_file_routes_serve_nothing_but_outputs_whatever_the_path(studio_server: tuple[ServerThread, Studio]) -> None:
    """Paths built from real run ids, file names, '..', encodings and control characters."""
    import httpx

    from portrait_studio.ledger import Ledger

    server, studio = studio_server
    with Ledger(studio.ledger_path) as ledger:
        runs = [r.id for r in ledger.runs(limit=10)]
        images = ledger.images(limit=100)
    names = ["keys.json", "ledger.db", "ledger.db-wal", "config.toml", "run.json", "contact-sheet.png", "images", "runs",
             "studio", "thumbs", "..", ".", "", "%2e%2e", "%2E%2e%2f", "%00", "%0a", "%5c", "~", *runs,
             *{Path(i.out_path or "").name for i in images}, *{i.image_sha256[:2] for i in images},
             *{Path(i.path).name for i in images}, str(studio.home).strip("/"), str(studio.keys_path).strip("/")]
    real = [f"/runs/{i.run_id}/files/{Path(i.out_path or '').name}" for i in images if i.out_path]
    real += [f"/runs/{r}/files/run.json" for r in runs] + [f"/images/{i.id}/file" for i in images]
    real += [f"/files/{Path(i.path).relative_to(studio.home)}" for i in images] + [f"/thumbs/{i.id}.jpg" for i in images]
    routes = ["/files/", *(f"/runs/{r}/files/" for r in runs), "/thumbs/", "/images/", "/runs/", "/static/"]
    allowed = _allowed_bodies(studio)
    statuses: Counter[int] = Counter()

    with httpx.Client(base_url=server.url, timeout=20) as http:
        built = st.builds(lambda route, parts: route + "/".join(parts), st.sampled_from(routes),
                          st.lists(st.sampled_from(names) | st.text(max_size=6), max_size=5))
        near_real = st.builds(lambda good, twist: good + twist, st.sampled_from(real),
                              st.sampled_from(["", "", "%00", "/..", "/../keys.json", "/../../ledger.db", ".", "/", "%2f..",
                                               "x", ".part", "%0a"]))

        @given(path=built | near_real)
        @settings(max_examples=max(100, EXAMPLES * 8), deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def probe(path: str) -> None:
            try:
                res = http.get(path)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError):
                return  # not a URL a client can send
            statuses[res.status_code] += 1
            _count("file routes", res.status_code)
            assert res.status_code < 500, (path, res.status_code, res.text[:200])
            assert SECRET.encode() not in res.content and not res.content.startswith(b"SQLite format"), path
            sent = res.request.url.path  # after the client removed dot segments
            if res.status_code == 200 and sent.startswith(("/files/", "/runs/")) and "/files/" in sent:
                assert res.content in allowed, path

        probe()
    assert statuses[200] > 0 and statuses[404] > 0  # the probe reached real files and refused the rest


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
"""Any value JSON can carry (NaN and infinity are not JSON; the forms refuse them separately)."""


def _leaves(data: object, prefix: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*prefix, k))] + [prefix]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*prefix, i))] + [prefix]
    return [prefix]


def _replace(data: object, path: tuple, value: object) -> object:  # type: ignore[type-arg]
    if not path:
        return value
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def test_real_requests_with_one_field_broken_get_clear_answers(studio_server: tuple[ServerThread, Studio]) -> None:
    """A valid brief, shoot or action request with one value replaced by anything JSON can hold."""
    import httpx

    from portrait_studio.brief import example_brief_path, load_brief
    from portrait_studio.ledger import Ledger

    server, studio = studio_server
    with Ledger(studio.ledger_path) as ledger:
        image = ledger.images(limit=1)[0]
        run_id = image.run_id
        reference = ledger.db.execute("SELECT image_sha256 FROM rights").fetchone()[0]
    ref_path = next(studio.images_dir.glob(f"*/{reference}.*"))
    brief = load_brief(example_brief_path("rembrandt-studio-headshot")).model_dump(mode="json", exclude_defaults=True)
    brief["references"] = [{"path": str(ref_path), "role": "identity"}]
    requests = [
        ("/api/brief/preview", {"brief": brief, "models": ["flux-2-pro", "flux-1.1-pro"]}),
        ("/api/brief/save", {"brief": brief, "name": "fuzzed"}),
        ("/api/shoot", {"brief": brief, "models": ["flux-2-pro"], "seeds": 1, "sandbox": "always", "budget": 1.0}),
        (f"/api/runs/{run_id}/vary", {"element": "lighting", "value": "clamshell", "sandbox": "always", "budget": 1.0}),
        (f"/api/images/{image.id}/fix", {"region": "eyes"}),
        (f"/api/images/{image.id}/upscale", {"scale": 2}),
        (f"/api/images/{image.id}/pick", {}),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        @given(which=st.sampled_from(requests), data=st.data())
        @settings(max_examples=max(60, EXAMPLES * 4), deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def send(which: tuple[str, dict], data: st.DataObject) -> None:  # type: ignore[type-arg]
            url, body = which
            path = data.draw(st.sampled_from(_leaves(body)))
            broken = _replace(body, path, data.draw(JSON))
            res = http.post(url, json=broken)
            _count("one field broken", res.status_code)
            assert res.status_code < 500, (url, path, res.status_code, res.text[:300])
            if res.status_code >= 400:
                assert res.json()["error"], (url, path)  # a message, and where it helps, the fix

        send()
    jobs = server.server.config.app.fastapi.state.jobs
    for job in jobs.jobs():
        jobs.wait(job.id, timeout=120)
        unexplained = job.status == "failed" and not job.hint and (job.error or "").split(":")[0].endswith(("Error", "Exception"))
        assert not unexplained or "realesrgan" in (job.error or ""), job  # the upscaler needs libvulkan1
