"""The web studio: FastAPI routes that parse, call the library, and render.

Pages: brief builder (/), gallery (/gallery), image detail (/images/ID), run with live
progress (/runs/ID), compare view (/runs/ID/compare), jobs (/jobs). JSON under /api.
Long work runs in the `JobManager`; progress streams over SSE and is read from the ledger.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import actions, ranking
from ..brief import (
    VARIABLE_ELEMENTS,
    Rights,
    example_brief_path,
    example_briefs,
    load_brief,
    parse_brief,
    preset,
)
from ..catalog import all_models
from ..compare import COLUMNS, MAX_MODELS, comparison_rows, plan_compare
from ..config import Studio
from ..errors import (
    BriefError,
    BudgetExceeded,
    CapabilityError,
    ConsentRequired,
    LedgerError,
    LimitError,
    NotConfigured,
    ProviderError,
    StudioError,
    UsageError,
)
from ..gallery import (
    CHECK_STATUSES,
    RUN_FILES,
    GalleryFilter,
    clean_thumbnail_parts,
    gallery_page,
    image_detail,
    output_file,
    run_file,
    run_progress,
    thumbnail,
)
from ..imaging import ImageInputError
from ..jobs import JobManager, execute_recorded_run, record_plan
from ..ledger import ImageRow, Ledger, RunRow
from ..preview import preview_brief, save_brief, store_reference, studio_references
from ..samplers import DEFAULT_SAMPLER, SAMPLERS
from ..seeds import EXPLORE_DEFAULT, EXPLORE_MAX, EXPLORE_MIN, SEED_MAX, SEED_MIN
from ..shoot import check_budget, choose_seeds, plan_shoot, plan_vary
from .isolated import run_isolated
from .security import MAX_BODY, StudioGuard
from .streams import ProgressStreams

__all__ = ["create_app", "http_status"]

HERE = Path(__file__).parent
SandboxChoice = Literal["auto", "always", "never"]


def http_status(exc: StudioError) -> int:
    """The HTTP answer for each branch of the error tree."""
    for kind, status in (
        (LedgerError, 404), (ConsentRequired, 403), (BudgetExceeded, 402), (NotConfigured, 503),
        (BriefError, 422), (LimitError, 422), (CapabilityError, 422), (ImageInputError, 422), (ProviderError, 502),
    ):
        if isinstance(exc, kind):
            return status
    return 400


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PreviewForm(_Form):
    brief: dict[str, Any]
    models: list[str] = Field(default_factory=list, max_length=MAX_MODELS)


class SaveForm(_Form):
    brief: dict[str, Any]
    name: str


class ShootForm(_Form):
    brief: dict[str, Any]
    models: list[str]
    kind: Literal["shoot", "compare"] = "shoot"
    seeds: int | None = Field(default=None, ge=EXPLORE_MIN, le=EXPLORE_MAX)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    budget: float | None = Field(default=None, ge=0)
    sandbox: SandboxChoice = "auto"


class VaryForm(_Form):
    element: str
    value: str
    budget: float | None = Field(default=None, ge=0)
    sandbox: SandboxChoice = "auto"


class UpscaleForm(_Form):
    scale: float = 2.0


class FixForm(_Form):
    region: str


class EditForm(_Form):
    instruction: str | None = Field(default=None, max_length=1000)
    look: str | None = None
    model: str = "flux-2-pro"
    budget: float | None = Field(default=None, ge=0)
    sandbox: SandboxChoice = "auto"


def _models_chosen(models: list[str]) -> list[str]:
    chosen = list(dict.fromkeys(m for m in models if m))
    if not chosen:
        raise BriefError("no model chosen", field="models", hint="tick at least one model")
    if len(chosen) > MAX_MODELS:
        raise BriefError(
            f"{len(chosen)} models chosen", field="models",
            hint=f"select up to {MAX_MODELS} models; a fifth does not fit side by side",
        )
    return chosen


def create_app(studio: Studio, *, token: str | None = None, checker: Any = "default", max_body: int = MAX_BODY,
               start_sandbox: Any = None, streams: ProgressStreams | None = None) -> Any:
    """The ASGI app for `studio`. `checker` is passed to runs (None skips the checklist); `start_sandbox`
    (handed in by `portrait serve`) lets runs without an API key use the providers' sandboxes;
    `streams` sets the progress streams' limits (defaults: see `ProgressStreams`)."""
    jobs = JobManager(studio)
    streams = streams or ProgressStreams()
    with Ledger(studio.ledger_path):  # create/migrate once, before request threads open their own connections
        pass
    clean_thumbnail_parts(studio.home)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown(wait=False)

    # The OpenAPI schema is served (for scripts, and so the API is fuzzed from its own description); no docs UI.
    app = FastAPI(title="Portrait Studio", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    local = threading.local()
    app.state.studio = studio
    app.state.jobs = jobs

    def ledger() -> Ledger:
        """One connection per worker thread (SQLite connections are not shared across threads)."""
        found: Ledger | None = getattr(local, "ledger", None)
        if found is None:
            found = local.ledger = Ledger(studio.ledger_path)
        return found

    def exact_image(ref: str) -> ImageRow:
        """The image with this exact id or sha256: links carry whole ids, so no prefix or wildcard acts here."""
        image = ledger().image(ref) if ref.strip() else None
        if image is None or ref not in (image.id, image.image_sha256):
            raise LedgerError(f"no image '{ref}' in the ledger", hint="open it from the gallery")
        return image

    def exact_run(ref: str) -> RunRow:
        run = ledger().run(ref) if ref.strip() else None
        if run is None or run.id != ref:
            raise LedgerError(f"no run '{ref}' in the ledger", hint="open it from the gallery or the Jobs page")
        return run

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"nav": name.split(".")[0], **context}, status_code=status)

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "")

    # --- errors --------------------------------------------------------------------------
    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> Response:
        status = http_status(exc)
        body = {"error": exc.message, "hint": exc.hint, "type": type(exc).__name__, "field": getattr(exc, "field", None)}
        if wants_json(request):
            return JSONResponse(body, status_code=status)
        return render(request, "error.html", status=status, error=exc.message, hint=exc.hint, code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        body = {"error": f"{field}: {first['msg']}" if field else str(first["msg"]), "hint": None, "field": field}
        if wants_json(request):
            return JSONResponse(body, status_code=422)
        return render(request, "error.html", status=422, error=body["error"], hint=None, code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "page not found" if exc.status_code == 404 else str(exc.detail)
        if wants_json(request):
            return JSONResponse({"error": message, "hint": None}, status_code=exc.status_code)
        return render(request, "error.html", status=exc.status_code, error=message, hint="go back to the gallery", code=exc.status_code)

    # --- brief builder ---------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def builder(request: Request) -> Response:
        models = [m for m in all_models() if "text-to-image" in m.modes]
        return render(
            request, "brief.html", models=models, examples=example_briefs(), lighting=list(preset("lighting")),
            compositions=list(preset("compositions")), lenses=list(preset("lenses")), angles=list(preset("angles")),
            backgrounds=list(preset("backgrounds")), avoid=preset("avoid")["default"], max_models=MAX_MODELS,
            cues=preset("quality")["default_cues"], samplers=[s for s in SAMPLERS if s != DEFAULT_SAMPLER],
            seeds=(EXPLORE_DEFAULT, EXPLORE_MIN, EXPLORE_MAX),  # the seed policy, as `portrait shoot` uses it
        )

    @app.get("/api/examples/{name}")
    def example(name: str) -> dict[str, Any]:
        brief = load_brief(example_brief_path(name))
        return brief.model_dump(mode="json")

    @app.get("/api/models")
    def models() -> list[dict[str, Any]]:
        from ..catalog import model_summary

        return [model_summary(m) for m in all_models()]

    @app.post("/api/brief/preview")
    def preview(form: PreviewForm) -> dict[str, Any]:
        def vet(brief: Any) -> Any:
            return studio_references(ledger(), studio.images_dir, brief)

        return preview_brief(form.brief, form.models, check_references=vet).model_dump(mode="json")

    @app.post("/api/brief/save")
    def save(form: SaveForm) -> dict[str, Any]:
        brief = parse_brief(form.brief, source="brief builder")
        path = save_brief(studio.home / "briefs", form.name, brief)
        return {"path": str(path), "yaml": path.read_text(encoding="utf-8")}

    @app.post("/api/references")
    def upload_reference(
        file: UploadFile = File(...),
        who: str = Form(""),
        source: str = Form(""),
        permission: str = Form(""),
        role: Literal["identity", "style"] = Form("identity"),
    ) -> dict[str, Any]:
        data = file.file.read(max_body + 1)
        rights = Rights(who=who, source=source, permission=permission, recorded_by="web studio") if (
            who.strip() and source.strip() and permission.strip()) else None
        stored = store_reference(ledger(), studio.images_dir, data, rights)
        return {**stored.model_dump(mode="json"), "role": role}

    # --- shoots, compares, varies ------------------------------------------------------------
    def submit(kind: str, title: str, work: Any, **where: str | None) -> Any:
        try:
            return jobs.submit(kind, title, work, **where)
        except RuntimeError:  # the job pool closed: the server is shutting down
            raise StudioError("the studio server is shutting down; nothing was started",
                              hint="start 'portrait serve' again; 'portrait resume' finishes a recorded run") from None

    def start_job(run_id: str, kind: str, title: str, sandbox: SandboxChoice, budget: float | None) -> str:
        def work(ctx: Any) -> str:
            execute_recorded_run(studio, run_id, sandbox=sandbox, budget=budget, checker=checker,
                                 start_sandbox=start_sandbox)
            return run_id

        return submit(kind, title, work, run_id=run_id).id

    @app.post("/api/shoot")
    def shoot(form: ShootForm) -> dict[str, Any]:
        brief = studio_references(ledger(), studio.images_dir, parse_brief(form.brief, source="brief builder"))
        chosen = _models_chosen(form.models)
        seed = form.seed
        if seed is None and form.seeds is None and brief.output.seed != "random":
            seed = int(brief.output.seed)
        seeds = choose_seeds(form.seeds, seed)
        if form.kind == "compare":
            plan = plan_compare(brief, chosen, seeds)
        else:
            plan = plan_shoot(brief, chosen, seeds)
        budget = form.budget if form.budget is not None else studio.config.default_budget_usd
        check_budget(plan, budget)
        studio_references(ledger(), studio.images_dir, brief, record=True)  # rights stated in the brief, kept now
        run_id = record_plan(studio, plan.to_plan(), budget=budget, sandbox=form.sandbox, start_sandbox=start_sandbox)
        title = f"{form.kind}: {brief.name or 'brief'} · {len(chosen)} model(s) × {len(seeds)} seed(s)"
        job_id = start_job(run_id, form.kind, title, form.sandbox, budget)
        return {"run_id": run_id, "job_id": job_id, "url": f"/runs/{run_id}",
                "estimated_usd": plan.estimated.usd, "images": len(plan.requests)}

    @app.post("/api/runs/{run_id}/vary")
    def vary(run_id: str, form: VaryForm) -> dict[str, Any]:
        if form.element not in VARIABLE_ELEMENTS:
            raise BriefError(f"cannot vary '{form.element}'", field="element", hint=f"vary one of: {', '.join(VARIABLE_ELEMENTS)}")
        value: Any = form.value.strip()
        if form.element == "lens":
            value = int(value) if value.isascii() and value.isdigit() else value
        plan = plan_vary(ledger(), exact_run(run_id).id, {form.element: value})
        budget = form.budget if form.budget is not None else studio.config.default_budget_usd
        check_budget(plan, budget)
        new_run = record_plan(studio, plan.to_plan(), budget=budget, sandbox=form.sandbox, start_sandbox=start_sandbox)
        job_id = start_job(new_run, "vary", f"vary {form.element} → {value}", form.sandbox, budget)
        return {"run_id": new_run, "job_id": job_id, "url": f"/runs/{new_run}"}

    # --- image actions -------------------------------------------------------------------------
    @app.post("/api/images/{image_id}/pick")
    def pick(image_id: str) -> dict[str, Any]:
        db = ledger()
        image = exact_image(image_id)
        if not image.run_id:
            raise LedgerError(f"image {image.id} belongs to no run", hint="only images of a shoot can be picked")
        row = db.pick(image.run_id, image.id)
        return {"image": row.model_dump(mode="json"), "vary_url": f"/images/{row.id}#vary"}

    def image_job(kind: str, image_id: str, title: str, fn: Any) -> dict[str, Any]:
        image = exact_image(image_id)  # 404 before queueing anything

        def work(ctx: Any) -> str | None:
            with Ledger(studio.ledger_path) as own:
                return fn(ctx, own, image.id)

        job = submit(kind, title, work, run_id=None, image_id=image.id)
        return {"job_id": job.id, "url": f"/jobs/{job.id}"}

    @app.post("/api/images/{image_id}/upscale")
    def upscale(image_id: str, form: UpscaleForm) -> dict[str, Any]:
        if not 1.0 < form.scale <= 4.0:
            raise LimitError(f"scale {form.scale:g} is outside 1–4", field="scale", hint="upscale 1.5–2x for portraits")

        def work(ctx: Any, own: Ledger, ref: str) -> str | None:
            # In a child process: the upscaler holds the GIL, which would freeze every other request.
            return run_isolated("upscale", [str(studio.home), ref, form.scale], ctx.say)

        return image_job("upscale", image_id, f"upscale ×{form.scale:g}", work)

    @app.post("/api/images/{image_id}/fix")
    def fix(image_id: str, form: FixForm) -> dict[str, Any]:
        if form.region not in actions.FIX_REGIONS:
            raise LimitError(f"unknown region '{form.region}'", field="region", hint=f"choose one of: {', '.join(actions.FIX_REGIONS)}")
        return image_job("fix", image_id, f"fix {form.region}",
                         lambda ctx, own, ref: actions.fix_region(studio, own, ref, form.region,
                                                                  start_sandbox=start_sandbox).id)

    @app.post("/api/images/{image_id}/edit")
    def edit(image_id: str, form: EditForm) -> dict[str, Any]:
        """One instruction edit or one restyle (a look) of the image: a labelled child, identity and checks measured."""
        from ..edit import check_instruction
        from ..looks import load_look

        if bool(form.instruction and form.instruction.strip()) == bool(form.look):
            raise BriefError("give an instruction or a look", field="instruction",
                             hint='e.g. "soften the fill light", or pick a look such as cinematic')
        if form.instruction:
            check_instruction(form.instruction)  # minors, keys, length: refused before a job starts
        if form.look:
            load_look(form.look)
        title = f"edit: {form.instruction}" if form.instruction else f"restyle: {form.look}"

        def work(ctx: Any, own: Ledger, ref: str) -> str:
            report = actions.edit_image(studio, own, ref, instruction=form.instruction or None,
                                        looks=(form.look,) if form.look else (), model=form.model,
                                        sandbox=form.sandbox, start_sandbox=start_sandbox, budget_usd=form.budget)
            first = report.results[0]
            ctx.say(f"identity {first.identity} ({first.distance}); checklist {first.check or 'n/a'}")
            return str(first.image_id)

        return image_job("edit", image_id, title, work)

    @app.post("/api/images/{image_id}/export")
    def export(image_id: str) -> dict[str, Any]:
        def work(ctx: Any, own: Ledger, ref: str) -> str:
            path, status = actions.export_labelled(studio, own, ref)
            ctx.say(f"labelled; C2PA {status}")
            return str(path.relative_to(studio.home))

        return image_job("export", image_id, "export with labels", work)

    # --- jobs and progress ------------------------------------------------------------------------
    @app.get("/api/jobs/{job_id}")
    def job_state(job_id: str) -> dict[str, Any]:
        return jobs.get(job_id).model_dump(mode="json")

    @app.get("/api/jobs/{job_id}/events", response_class=StreamingResponse)
    def job_events(job_id: str) -> Response:
        jobs.get(job_id)

        def snapshot() -> tuple[dict[str, Any], bool]:
            job = jobs.get(job_id)
            return job.model_dump(mode="json"), job.finished

        return streams.response(f"job:{job_id}", snapshot, live=lambda: not jobs.get(job_id).finished)

    def run_snapshot(run_id: str) -> tuple[dict[str, Any], bool]:
        db = ledger()
        progress = run_progress(db, run_id)
        job = jobs.for_run(progress.run_id)
        images = db.images(run_id=progress.run_id, limit=200)
        data = {
            "progress": progress.model_dump(mode="json"),
            "job": job.model_dump(mode="json") if job else None,
            "images": [_tile(i) for i in ranking.rank(images)],
        }
        finished = job.finished if job else progress.finished
        return data, finished

    @app.get("/api/runs/{run_id}/progress")
    def progress(run_id: str) -> dict[str, Any]:
        return run_snapshot(exact_run(run_id).id)[0]

    @app.get("/api/runs/{run_id}/events", response_class=StreamingResponse)
    def run_events(run_id: str) -> Response:
        exact_run(run_id)

        def live() -> bool:
            job = jobs.for_run(run_id)
            return job is not None and not job.finished

        return streams.response(f"run:{run_id}", lambda: run_snapshot(run_id), live=live)

    # --- pages ---------------------------------------------------------------------------------
    @app.get("/gallery", response_class=HTMLResponse)
    def gallery(
        request: Request, run: str | None = None, model: str | None = None, seed: str | None = None,
        check: str | None = None, picked: str | None = None, page_no: int = 1, page: int | None = None,
    ) -> Response:
        try:
            f = GalleryFilter.model_validate({
                "run": run or None, "model": model or None,
                "seed": int(seed) if seed and seed.isascii() and seed.isdigit() else None,
                "check": check or None, "picked": {"true": True, "false": False}.get(picked or ""), "page": page or page_no,
            })
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "filter"
            raise UsageError(first["msg"], field=name, hint="clear the gallery's filters") from None
        result = gallery_page(ledger(), f)
        return _page_gallery(request, result)

    def _page_gallery(request: Request, result: Any) -> Response:
        return render(request, "gallery.html", result=result, f=result.filter, checks=CHECK_STATUSES)

    @app.get("/images/{image_id}", response_class=HTMLResponse)
    def detail(request: Request, image_id: str) -> Response:
        d = image_detail(ledger(), exact_image(image_id).id)
        neighbours = _neighbours(ledger(), d.image)
        from ..catalog import edit_models
        from ..looks import look_names

        return render(request, "image.html", d=d, elements=list(VARIABLE_ELEMENTS), regions=actions.FIX_REGIONS,
                    neighbours=neighbours, lighting=list(preset("lighting")), backgrounds=list(preset("backgrounds")),
                    looks=look_names(), edit_models=edit_models())

    @app.get("/images/{image_id}/file")
    def full_image(image_id: str) -> FileResponse:
        image = exact_image(image_id)
        if not Path(image.path).is_file():
            raise LedgerError(f"the file of image {image.id} is missing: {image.path}", hint="restore the studio's images/ folder")
        return _file_response(Path(image.path), cache=True)

    @app.get("/thumbs/{image_id}.jpg")
    def thumb(image_id: str) -> FileResponse:
        image = exact_image(image_id)
        path = thumbnail(studio.home, image)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=31536000, immutable"})

    @app.get("/files/{path:path}")
    def studio_file(path: str) -> FileResponse:
        """A file the ledger lists as an output (images, run files, exports), by its path in the studio folder."""
        return _file_response(output_file(ledger(), studio.home, path))

    @app.get("/runs/{run_id}/files/{name}")
    def run_folder_file(run_id: str, name: str) -> FileResponse:
        """A run's image, contact sheet, grid or run.json, wherever `--out` put the run's folder."""
        return _file_response(run_file(ledger(), studio.home, run_id, name))

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> Response:
        run = exact_run(run_id)
        data, finished = run_snapshot(run.id)
        folder = Path(run.out_dir) if run.out_dir else None
        files = sorted(p.name for p in folder.iterdir() if RUN_FILES.fullmatch(p.name)) if folder and folder.is_dir() else []
        return render(request, "run.html", run=run, snap=data, finished=finished, files=files)

    @app.get("/runs/{run_id}/compare", response_class=HTMLResponse)
    def compare_page(request: Request, run_id: str) -> Response:
        db = ledger()
        run = exact_run(run_id)
        rows = comparison_rows(db, run.id)
        seeds = sorted({i.seed for r in rows for i in r["images"] if i.seed is not None})
        grid = [(seed, [(r, next((i for i in r["images"] if i.seed == seed), None)) for r in rows]) for seed in seeds]
        return render(request, "compare.html", run=run, rows=rows, grid=grid, columns=COLUMNS,
                    finished=run_snapshot(run.id)[1])

    @app.get("/api/batches/{run_id}/progress")
    def batch_progress_api(run_id: str) -> dict[str, Any]:
        from ..batch import batch_progress

        return batch_progress(ledger(), ledger().run(run_id).id).model_dump(mode="json")

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs_page(request: Request) -> Response:
        from ..batch import recent_batches

        return render(request, "jobs.html", jobs=jobs.jobs(), batches=recent_batches(ledger()))

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str) -> Response:
        return render(request, "jobs.html", jobs=[jobs.get(job_id)], single=True)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg")

    guarded = StudioGuard(app, token=token, max_body=max_body)
    guarded.fastapi = app  # type: ignore[attr-defined]  # tests reach app.state.jobs through it
    return guarded


FILE_HEADERS = {
    # A served file is data, never a page that runs in the studio's origin (comparison.html included).
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
}


def _file_response(path: Path, *, cache: bool = False) -> FileResponse:
    headers = dict(FILE_HEADERS)
    if cache:  # content-addressed: the bytes behind this URL never change
        headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return FileResponse(path, headers=headers)


def _tile(image: ImageRow) -> dict[str, Any]:
    return {
        "id": image.id, "thumb": f"/thumbs/{image.id}.jpg", "url": f"/images/{image.id}", "model": image.model,
        "seed": image.seed, "check": image.check_overall, "score": image.check_score, "picked": image.picked,
        "sandbox": image.sandbox, "operation": image.operation, "cost_usd": image.cost_usd,
        "width": image.width, "height": image.height,
    }


def _neighbours(ledger: Ledger, image: ImageRow) -> dict[str, str | None]:
    """Previous/next image in the gallery's order, for j/k on the detail page."""
    newer, older = ledger.neighbours(image)
    return {"prev": newer, "next": older}
