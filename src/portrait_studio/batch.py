"""Batches: hundreds of portraits from one file — people × looks × seeds, filtered by the checklist.

    JOBS.yaml / people.csv ──load_batch──► BatchFile ──plan_batch──► BatchPlan ──to_plan()──► Engine
        (each person is a brief, or the            one cell per person × look,   steps: deliver, batch
         batch's brief plus overrides,             its seeds compiled for its
         with an anchor and its consent)           model; estimates of count,
                                                   cost (with re-rolls) and time

The `batch` finishing step is the quality filter: it checks every image against its own cell's
brief, keeps the best `keep` per person and look, re-rolls a cell that has fewer than `keep`
passing images (up to `rerolls` rounds; the seeds of a re-roll are derived from the batch seed,
so a resumed batch asks for exactly the same images and pays for none twice), then writes one
contact sheet per person and the batch report (counts, cost, pass rate, re-rolls, time).

Where the requests run is the engine's business: in this process (the runner), or on a Ray
cluster (`cluster.ClusterRunner`) — the plan, the ledger and `portrait resume` are the same.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .brief import Brief, Reference, Rights, _line_for, example_brief_path, load_brief, parse_brief, read_yaml
from .catalog import get_model
from .engine import Plan, Step, StepContext, register_step
from .errors import BriefError, StudioError
from .files import atomic_write_text
from .ledger import ImageRow, Ledger, RunRow
from .prompting import compile_brief
from .records import Cost, Request
from .series import Shot, apply_changes, example_shots_path, load_shots, parse_shots

__all__ = [
    "BatchCell",
    "BatchFile",
    "BatchPerson",
    "BatchPlan",
    "BatchProgress",
    "BatchReport",
    "batch_progress",
    "batch_report",
    "recent_batches",
    "cell_brief",
    "example_batch_path",
    "load_batch",
    "plan_batch",
    "record_consent",
]

MAX_CELLS = 10_000
MAX_SEEDS = 16
MAX_REROLLS = 5
SUBJECT_FIELDS = ("description", "age", "ethnicity", "skin_tone", "gender_expression")
TYPICAL_SECONDS = {"bfl": 10.0, "fal": 8.0, "replicate": 12.0, "local": 5.2}
"""Seconds per image when the ledger has no history for a model: hosted, BFL's typical queue plus
generation; local, FLUX.1 [dev] bf16 at 1024² on one H100 (bench/results, 28 steps)."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class BatchPerson(BaseModel):
    """One row: a person (or any subject) and what differs from the batch's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=120)
    brief: str | None = Field(default=None, description="their own brief (a file or a preset name)")
    subject: dict[str, Any] = Field(default_factory=dict, description="age, skin_tone, description ... (declared)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="brief slots to change, e.g. {lighting: {pattern: clamshell}}")
    anchor: str | None = Field(default=None, description="a headshot of the person: every image keeps their identity")
    consent: Rights | None = None
    reference_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    model: str | None = None
    provider: str | None = None
    seeds: int | list[int] | None = None
    looks: list[Shot] | str | None = None
    keep: int | None = Field(default=None, ge=1, le=MAX_SEEDS)
    rerolls: int | None = Field(default=None, ge=0, le=MAX_REROLLS)
    upscale: float | None = Field(default=None, gt=1, le=4, description="upscale the kept images by this factor")

    @field_validator("subject")
    @classmethod
    def _known_subject(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - {*SUBJECT_FIELDS, "anchors"})
        if unknown:
            raise ValueError(f"unknown subject field '{unknown[0]}'; a person can set: {', '.join(SUBJECT_FIELDS)}, anchors")
        return value


class BatchFile(BaseModel):
    """JOBS.yaml: the batch's defaults, and its people."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    brief: str | None = Field(default=None, description="the default brief (a file, relative to JOBS.yaml, or a preset name)")
    model: str = "flux-1.1-pro"
    provider: str | None = None
    seeds: int | list[int] = 2
    keep: int = Field(default=1, ge=1, le=MAX_SEEDS)
    rerolls: int = Field(default=1, ge=0, le=MAX_REROLLS)
    seed: int | None = Field(default=None, ge=0, lt=2**32, description="the batch seed every cell's seeds derive from")
    upscale: float | None = Field(default=None, gt=1, le=4, description="upscale the kept images by this factor")
    upscale_method: Literal["standard", "max", "lanczos"] = "standard"
    looks: list[Shot] | str | None = None
    people: list[BatchPerson] = Field(min_length=1, max_length=MAX_CELLS)

    @field_validator("people")
    @classmethod
    def _distinct_people(cls, people: list[BatchPerson]) -> list[BatchPerson]:
        seen: dict[str, str] = {}
        for p in people:
            slug = _slug(p.name)
            if slug in seen:
                raise ValueError(f"two people are named '{p.name}' (also '{seen[slug]}'); give each a distinct name")
            seen[slug] = p.name
        return people


class BatchCell(BaseModel):
    """One person in one look: its brief, model and the images it asks for."""

    model_config = ConfigDict(frozen=True)

    id: str
    person: str
    look: str
    brief: Brief
    model: str
    provider: str
    keep: int
    rerolls: int
    anchor: str | None = None
    consent: Rights | None = None
    reference_weight: float = 0.3
    declared: dict[str, Any] = Field(default_factory=dict)
    upscale: float | None = None
    upscale_method: str = "standard"
    requests: tuple[Request, ...]

    def compile(self, seed: int, round_: int) -> Request:
        """The cell's request at `seed` (round 0: planned; later rounds: re-rolls)."""
        brief = self.brief
        if self.anchor:
            ref = Reference(path=self.anchor, role="identity", weight=self.reference_weight, rights=self.consent)
            others = tuple(r for r in brief.references if r.role != "identity")
            brief = brief.model_copy(update={"references": (ref, *others)[: max(1, get_model(self.model).max_references)]})
        request = compile_brief(brief, self.model, provider=self.provider, seed=seed)
        options: dict[str, Any] = {**request.options, "batch": {"cell": self.id, "round": round_},
                                   "folder": _slug(self.person)}
        if self.declared:
            options["declared"] = self.declared
        return request.model_copy(update={"options": options})


class BatchPlan(BaseModel):
    """Every cell and every first-round request of a batch, decided before anything is paid for."""

    model_config = ConfigDict(frozen=True)

    name: str
    seed: int
    cells: tuple[BatchCell, ...]
    source: str | None = None

    @property
    def requests(self) -> tuple[Request, ...]:
        return tuple(r for c in self.cells for r in c.requests)

    @property
    def estimated(self) -> Cost:
        total = Cost()
        for r in self.requests:
            total = total + r.estimated_cost
        return total

    @property
    def worst_case(self) -> Cost:
        """The estimate if every cell used all its re-rolls (each round re-rolls at most `keep` images)."""
        total = self.estimated
        for c in self.cells:
            if c.requests:
                total = total + Cost(credits=c.requests[0].estimated_cost.credits * c.keep * c.rerolls,
                                     usd=c.requests[0].estimated_cost.usd * c.keep * c.rerolls)
        return total

    @property
    def provider_ids(self) -> list[str]:
        return list(dict.fromkeys(r.provider for r in self.requests))

    @property
    def people(self) -> list[str]:
        return list(dict.fromkeys(c.person for c in self.cells))

    def estimated_seconds(self, *, history: Mapping[str, float] | None = None,
                          parallel: Mapping[str, int] | None = None) -> float:
        """Wall time: per provider, its images in waves of its parallel slots (the account's active
        tasks hosted, the GPUs locally), at the seconds per image this studio measured before
        (`history`, per model) or the typical figure."""
        history, parallel = history or {}, parallel or {}
        total = 0.0
        for pid in self.provider_ids:
            reqs = [r for r in self.requests if r.provider == pid]
            per = statistics.mean(history.get(r.model, TYPICAL_SECONDS.get(pid, 10.0)) for r in reqs)
            slots = max(1, parallel.get(pid, 24 if pid == "bfl" else (1 if pid == "local" else 8)))
            total = max(total, math.ceil(len(reqs) / slots) * per)
        return total

    def record(self) -> dict[str, Any]:
        """What the `batch` step needs to filter and re-roll, kept in the run's plan."""
        return {
            "name": self.name, "seed": self.seed, "source": self.source, "people": self.people,
            "cells": {c.id: c.model_dump(mode="json", exclude={"requests"}) for c in self.cells},
            "rounds": [], "estimated_usd": self.estimated.usd, "worst_case_usd": self.worst_case.usd,
        }

    def to_plan(self) -> Plan:
        return Plan(kind="batch", requests=self.requests, steps=(Step(name="deliver"), Step(name="batch")),
                    name=self.name, brief_path=self.source, details={"batch": self.record()})


# --- loading -------------------------------------------------------------------------------------


def example_batch_path(name: str = "team-page") -> Path:
    from importlib import resources

    return Path(str(resources.files("portrait_studio").joinpath(f"presets/batches/{name}.yaml")))


def _validate(data: Any, source: str, lines: dict[tuple[Any, ...], int]) -> BatchFile:
    if not isinstance(data, dict):
        raise BriefError("a batch file is a mapping with people: [...] (and defaults: brief, model, seeds ...)",
                         file=source, line=1, hint=f"see {example_batch_path()} for one that works")
    try:
        return BatchFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        hint = f"see {example_batch_path()} for the format"
        if first["type"] == "extra_forbidden":
            owner = BatchPerson if "people" in loc else (Shot if "looks" in loc else BatchFile)
            msg, hint = f"unknown field '{loc[-1]}'", f"known fields: {', '.join(owner.model_fields)}"
        elif first["type"] == "missing":
            msg, hint = "is required", "add it to the batch file"
        raise BriefError(msg, field=".".join(str(p) for p in loc), file=source, line=_line_for(loc, lines),
                         hint=hint) from None


CSV_COLUMNS = ("name", "brief", "model", "provider", "seeds", "keep", "rerolls", "looks", "anchor",
               "consent_who", "consent_source", "consent_permission", "reference_weight", *SUBJECT_FIELDS)


def _csv_rows(path: Path) -> tuple[list[dict[str, Any]], dict[tuple[Any, ...], int]]:
    """people.csv: one person per row; columns from CSV_COLUMNS, plus `brief.slot.key` overrides."""
    people: list[dict[str, Any]] = []
    lines: dict[tuple[Any, ...], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        for i, row in enumerate(reader):
            line = reader.line_num
            person: dict[str, Any] = {}
            for column, raw in row.items():
                if column is None:
                    raise BriefError("the row has more values than the header has columns", file=str(path), line=line,
                                     hint="quote values that contain commas")
                value = (raw or "").strip()
                key = column.strip()
                lines[("people", i, key.split(".")[0])] = line
                if not value:
                    continue
                if key in SUBJECT_FIELDS:
                    person.setdefault("subject", {})[key] = int(value) if key == "age" and value.isdigit() else value
                elif key.startswith("consent_"):
                    person.setdefault("consent", {})[key.removeprefix("consent_")] = value
                elif key == "seeds":
                    person["seeds"] = [int(s) for s in value.split(";")] if ";" in value else int(value) if value.isdigit() else value
                elif key in ("keep", "rerolls"):
                    person[key] = int(value) if value.isdigit() else value
                elif key == "reference_weight":
                    person[key] = value
                elif "." in key:
                    node = person.setdefault("overrides", {})
                    *parents, leaf = key.split(".")
                    for p in parents:
                        node = node.setdefault(p, {})
                    node[leaf] = value
                elif key in CSV_COLUMNS:
                    person[key] = value
                else:
                    raise BriefError(f"unknown column '{key}'", field=key, file=str(path), line=1,
                                     hint=f"use {', '.join(CSV_COLUMNS)}, or brief slots like lighting.pattern")
            lines[("people", i)] = line
            people.append(person)
    return people, lines


def load_batch(path: str | Path, *, defaults: Mapping[str, Any] | None = None) -> BatchFile:
    """A batch from JOBS.yaml, or from a CSV of people (with `defaults` from the command line).
    Mistakes name the file, line and field."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise BriefError("file not found", file=str(path), hint="check the path")
        people, lines = _csv_rows(path)
        data: dict[str, Any] = {**{k: v for k, v in (defaults or {}).items() if v is not None}, "people": people}
    else:
        data, lines = read_yaml(path, missing_hint="see presets/batches/ for an example")
        if isinstance(data, dict):
            data = {**{k: v for k, v in (defaults or {}).items() if v is not None}, **data}
    return _validate(data, str(path), lines)


# --- planning ------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def _brief_file(ref: str, base: Path) -> Brief:
    path = (base / ref) if not Path(ref).is_absolute() else Path(ref)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return load_brief(path)
    return load_brief(example_brief_path(ref))


def _looks(value: list[Shot] | str | None, base: Path, where: str) -> tuple[Shot, ...]:
    if value is None:
        return (Shot(name="portrait"),)
    if isinstance(value, str):
        path = base / value if not Path(value).is_absolute() else Path(value)
        if not path.exists() and path.suffix == "":
            path = example_shots_path(value)
            if not path.exists():
                raise BriefError(f"no looks file or series preset '{value}'", field=where,
                                 hint="give a SHOTS.yaml path or a preset from presets/series/ (six-looks)")
        return load_shots(path)
    return parse_shots(list(value), source=where) if not all(isinstance(s, Shot) for s in value) else tuple(value)


def cell_seed(batch_seed: int, cell_id: str, round_: int, index: int) -> int:
    """Seeds derived from the batch seed: the same batch asks for the same images, re-rolls included."""
    digest = hashlib.sha256(f"{batch_seed}:{cell_id}:{round_}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def plan_batch(batch: BatchFile, *, base_dir: str | Path = ".", source: str | None = None,
               seed: int | None = None) -> BatchPlan:
    """Every cell's first-round requests, compiled for its model. Pure: nothing is sent or recorded."""
    import random

    base = Path(base_dir)
    batch_seed = seed if seed is not None else batch.seed if batch.seed is not None else random.SystemRandom().randrange(2**32)
    default_brief = _brief_file(batch.brief, base) if batch.brief else None
    default_looks = _looks(batch.looks, base, "looks")
    cells: list[BatchCell] = []
    for i, person in enumerate(batch.people):
        where = f"people.{i}"
        try:
            brief = _brief_file(person.brief, base) if person.brief else default_brief
        except BriefError as exc:
            raise BriefError(exc.message, field=f"{where}.brief", hint=exc.hint) from None
        if brief is None:
            raise BriefError(f"{person.name} has no brief", field=f"{where}.brief",
                             hint="give the batch a brief: (a file or preset), or each person their own")
        data = _deep_merge(brief.model_dump(mode="python"), person.overrides)
        data["subject"] = _deep_merge(data["subject"], person.subject)
        if {"age", "gender_expression"} & person.subject.keys() and "description" not in person.subject:
            data["subject"]["description"] = None  # the preset's description would contradict them
        data["name"] = person.name
        person_brief = parse_brief(data, source=f"{source or 'batch'} {where}")
        anchor = None
        if person.anchor:
            path = base / person.anchor if not Path(person.anchor).is_absolute() else Path(person.anchor)
            if not path.is_file():
                raise BriefError(f"anchor image not found: {person.anchor}", field=f"{where}.anchor",
                                 hint="give a clear, front-facing headshot (relative to the batch file)")
            anchor = str(path.resolve())
        looks = _looks(person.looks, base, f"{where}.looks") if person.looks is not None else default_looks
        seeds_spec = person.seeds if person.seeds is not None else batch.seeds
        model = person.model or batch.model
        provider = person.provider or batch.provider or get_model(model).default_provider
        get_model(model).route(provider)
        for j, look in enumerate(looks):
            look_name = look.label if look.changes or look.name else "portrait"
            cell_id = f"{_slug(person.name)}/{_slug(look_name)}-{j + 1}" if len(looks) > 1 else _slug(person.name)
            look_brief = apply_changes(person_brief, look.changes, source=f"{where} look {look_name}") if look.changes else person_brief
            cell = BatchCell(
                id=cell_id, person=person.name, look=look_name, brief=look_brief, model=model, provider=provider,
                keep=person.keep or batch.keep, rerolls=person.rerolls if person.rerolls is not None else batch.rerolls,
                anchor=anchor, consent=person.consent, reference_weight=person.reference_weight,
                declared={k: v for k, v in person.subject.items() if k in ("age", "skin_tone", "gender_expression", "ethnicity")},
                upscale=person.upscale if person.upscale is not None else batch.upscale,
                upscale_method=batch.upscale_method, requests=(),
            )
            if isinstance(seeds_spec, int):
                if not 1 <= seeds_spec <= MAX_SEEDS:
                    raise BriefError(f"{seeds_spec} seeds", field=f"{where}.seeds", hint=f"1 to {MAX_SEEDS} candidates per look")
                seeds = [cell_seed(batch_seed, cell_id, 0, k) for k in range(seeds_spec)]
            else:
                seeds = list(seeds_spec)
                bad = [s for s in seeds if not 0 <= s < 2**32]
                if bad or not 1 <= len(seeds) <= MAX_SEEDS:
                    raise BriefError(f"seeds {seeds}", field=f"{where}.seeds",
                                     hint=f"1 to {MAX_SEEDS} seeds, each 0–4294967295")
            if cell.keep > len(seeds):
                raise BriefError(f"keep {cell.keep} but only {len(seeds)} candidates", field=f"{where}.keep",
                                 hint="keep at most as many images as there are seeds")
            cells.append(cell.model_copy(update={"requests": tuple(cell.compile(s, 0) for s in seeds)}))
    if len(cells) > MAX_CELLS:
        raise BriefError(f"{len(cells)} person × look cells", field="people", hint=f"split the batch (at most {MAX_CELLS})")
    name = batch.name or (Path(source).stem if source else "batch")
    return BatchPlan(name=name, seed=batch_seed, cells=tuple(cells), source=source)


def record_consent(plan: BatchPlan, ledger: Ledger) -> BatchPlan:
    """Record (or find) the rights for every anchor before anything is sent; the rights id travels
    with each request. ConsentRequired names the person whose record is missing."""
    from .consent import CONSENT_HINT, require_rights
    from .errors import ConsentRequired

    cells = []
    for cell in plan.cells:
        if cell.anchor is None:
            cells.append(cell)
            continue
        try:
            rights_id = require_rights(ledger, cell.anchor, cell.consent)
        except ConsentRequired:
            raise ConsentRequired(
                f"{cell.person}'s anchor {Path(cell.anchor).name} has no consent record; nothing was sent",
                hint="add consent: {who, source, permission} to the person in the batch file (CSV: consent_who, "
                     f"consent_source, consent_permission) — {CONSENT_HINT}") from None
        requests = tuple(_with_rights(r, rights_id) for r in cell.requests)
        cells.append(cell.model_copy(update={"requests": requests}))
    return plan.model_copy(update={"cells": tuple(cells)})


def _with_rights(request: Request, rights_id: str) -> Request:
    images = tuple(i.model_copy(update={"rights_id": rights_id}) if i.role != "mask" else i for i in request.images)
    return request.model_copy(update={"images": images})


# --- the quality filter: the `batch` step ----------------------------------------------------------


_STATUS_RANK = {"pass": 0, "warn": 1, "not_applicable": 2, None: 3, "fail": 4}


def _cells(run: RunRow) -> dict[str, BatchCell]:
    record = (run.plan or {}).get("batch") or {}
    return {cid: BatchCell.model_validate({**data, "requests": ()}) for cid, data in record.get("cells", {}).items()}


def cell_brief(run: RunRow, request: Request) -> Brief | None:
    """The brief an image of `run` is checked against: its batch cell's, else the run's."""
    tag = request.options.get("batch")
    if isinstance(tag, dict) and tag.get("cell"):
        data = ((run.plan or {}).get("batch") or {}).get("cells", {}).get(tag["cell"])
        if data is not None:
            return Brief.model_validate(data["brief"])
    if run.brief:
        return parse_brief(run.brief, source=f"run {run.id}")
    return None


def _passes(image: ImageRow) -> bool:
    return image.check_overall != "fail"


def _ranked(images: Sequence[ImageRow]) -> list[ImageRow]:
    return sorted(images, key=lambda i: (_STATUS_RANK.get(i.check_overall, 3),
                                         -(i.check_score if i.check_score is not None else -1.0), i.created_at, i.id))


def _cell_images(ledger: Ledger, run_id: str) -> tuple[dict[str, list[ImageRow]], dict[str, int]]:
    """(images per cell, failed requests per cell)."""
    by_request = {r.id: r for r in ledger.requests(run_id)}
    images: dict[str, list[ImageRow]] = {}
    failed: dict[str, int] = {}
    for row in by_request.values():
        cell = (row.request.options.get("batch") or {}).get("cell")
        if cell and row.status in ("failed", "skipped"):
            failed[cell] = failed.get(cell, 0) + 1
    for image in ledger.images(run_id=run_id, limit=1_000_000):
        made = by_request.get(image.request_id or "")
        if made is None or image.operation != "generate":
            continue
        cell = (made.request.options.get("batch") or {}).get("cell")
        if cell:
            images.setdefault(cell, []).append(image)
    return images, failed


def _check_missing(engine: Any, run: RunRow) -> None:
    """The checklist, against each image's own cell brief, on images not checked yet (the cluster's
    CPU workers check as images arrive; this catches the rest, and every in-process image)."""
    if engine.checker is None:
        return
    rows = {r.id: r for r in engine.ledger.requests(run.id)}
    for image in engine.ledger.images(run_id=run.id, limit=1_000_000):
        if image.operation != "generate" or engine.ledger.checks(image.image_sha256) is not None:
            continue
        row = rows.get(image.request_id or "")
        brief = cell_brief(run, row.request) if row else None
        if brief is None:
            continue
        path = image.out_path if image.out_path and Path(image.out_path).is_file() else image.path
        overall, score, data = engine.checker(Path(path), brief)
        engine.ledger.record_checks(image.image_sha256, overall, score, data)


@register_step("batch")
async def _step_batch(ctx: StepContext) -> None:
    """Check, keep the best, re-roll short cells (rounds recorded so a resumed batch replays them), report."""
    engine, ledger = ctx.engine, ctx.engine.ledger
    run = ledger.run(ctx.run.id)
    cells = _cells(run)
    record = dict((run.plan or {})["batch"])
    batch_seed = int(record["seed"])
    rounds: list[dict[str, Any]] = list(record.get("rounds", []))
    checked = engine.checker is not None
    for round_ in range(1, MAX_REROLLS + 1):
        _check_missing(engine, run)
        if round_ <= len(rounds):
            wanted = {c: int(n) for c, n in rounds[round_ - 1]["cells"].items()}
        else:
            images, failed = _cell_images(ledger, run.id)
            wanted = {}
            for cid, cell in cells.items():
                passing = sum(_passes(i) for i in images.get(cid, [])) if checked else len(images.get(cid, []))
                if passing < cell.keep and round_ <= cell.rerolls:
                    wanted[cid] = cell.keep - passing
            if not wanted:
                break
            rounds.append({"round": round_, "cells": wanted, "at": time.time()})
            record["rounds"] = rounds
            ledger.set_run_plan(run.id, {**(run.plan or {}), "batch": record})
            run = ledger.run(run.id)
        if not wanted:
            break
        requests: list[Request] = []
        for cid, n in wanted.items():
            cell = cells[cid]
            template = next((r.request for r in ledger.requests(run.id)
                             if (r.request.options.get("batch") or {}).get("cell") == cid), None)
            for k in range(n):
                request = cell.compile(cell_seed(batch_seed, cid, round_, k), round_)
                if template is not None and template.images:  # the anchor's rights id, as first recorded
                    request = request.model_copy(update={"images": template.images})
                requests.append(request)
        await engine.make_many(run.id, requests, budget_usd=ctx.budget_usd)
    _check_missing(engine, ledger.run(run.id))
    report = batch_report(ledger, run.id)
    if any(c.upscale for c in cells.values()):
        await _upscale_kept(engine, ledger.run(run.id), cells, report, ctx.out_dir)
        report = batch_report(ledger, run.id)
    _write_outputs(ledger, run.id, report, ctx.out_dir)
    record["kept"] = {c.id: c.kept for c in report.cells}
    record["report"] = report.model_dump(mode="json", exclude={"cells"})
    ledger.set_run_plan(run.id, {**(ledger.run(run.id).plan or {}), "batch": record})


def _upscaled(ledger: Ledger, run_id: str, image: ImageRow) -> ImageRow | None:
    return next((c for c in ledger.children(image.image_sha256) if c.operation == "upscale" and c.run_id == run_id), None)


async def _upscale_kept(engine: Any, run: RunRow, cells: Mapping[str, BatchCell], report: BatchReport,
                        out: Path) -> None:
    """The kept images of each cell that asks for it, upscaled (on the cluster's CPU workers when the batch
    runs on Ray, else here in a thread) and recorded as their children; idempotent on resume."""
    import asyncio
    import io

    from PIL import Image

    from .finishing.lineage import record_derived
    from .finishing.upscale import target_size, upscale
    from .finishing.upscaling import _label, _network

    ledger = engine.ledger
    remote = engine.runner.upscale if getattr(engine.runner, "finishers", None) is not None else None

    async def one(image: ImageRow, scale: float, method: str) -> None:
        if _upscaled(ledger, run.id, image) is not None:
            return
        started = time.perf_counter()
        data = Path(image.path).read_bytes()
        if remote is not None:
            made: bytes = await remote(data, scale, method)
        else:
            def work() -> bytes:
                with Image.open(io.BytesIO(data)) as im:
                    big = upscale(im.convert("RGB"), scale, method=method)  # type: ignore[arg-type]
                buffer = io.BytesIO()
                big.save(buffer, "PNG")
                return buffer.getvalue()

            made = await asyncio.to_thread(work)
        size = target_size(image.width or 0, image.height or 0, scale)
        seconds = round(time.perf_counter() - started, 3)
        network = _network(method, scale)[0]
        details: dict[str, Any] = {"scale": scale, "engine": network, "size": list(size), "seconds": seconds,
                                   "batch": True}
        args = {"scale": scale, "method": method}
        source = Path(image.out_path or image.path)
        record_derived(engine, made, parent=image, operation="upscale", details=details,
                       info=_label(engine, None, image, args, size=size, details=details),
                       path=source.with_name(f"{source.stem}.upscaled-{scale:g}x.png"), run_id=run.id,
                       model=network, sandbox=image.sandbox, timings={"upscale_s": seconds})

    jobs = []
    for summary in report.cells:
        cell = cells.get(summary.id)
        if cell is None or not cell.upscale:
            continue
        for image_id in summary.kept:
            jobs.append(one(ledger.image(image_id), cell.upscale, cell.upscale_method))
    await asyncio.gather(*jobs)


# --- report, sheets, progress ---------------------------------------------------------------------


class CellSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    person: str
    look: str
    keep: int
    candidates: int
    passed: int
    failed_requests: int
    rerolled: int
    kept: list[str]
    """Image ids kept, best first."""
    kept_files: list[str]
    upscaled_files: list[str] = []

    @property
    def short(self) -> bool:
        return len(self.kept) < self.keep


class BatchReport(BaseModel):
    """The batch at a glance: counts, cost, pass rate, re-rolls, time."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    name: str
    people: int
    cells: list[CellSummary]
    requests: int
    images: int
    failed: int
    rerolls: int
    checked: int
    passed: int
    kept: int
    upscaled: int = 0
    short_cells: list[str]
    spent_usd: float
    sandbox_usd: float
    seconds: float
    images_per_minute: float

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.checked if self.checked else None


def batch_report(ledger: Ledger, run_id: str) -> BatchReport:
    run = ledger.run(run_id)
    cells = _cells(run)
    images, failed = _cell_images(ledger, run.id)
    rows = ledger.requests(run.id)
    rerolls = sum(1 for r in rows if int((r.request.options.get("batch") or {}).get("round", 0)) > 0)
    summaries = []
    for cid, cell in cells.items():
        mine = images.get(cid, [])
        checked = [i for i in mine if i.check_overall is not None]
        passing = [i for i in _ranked(mine) if _passes(i)]
        kept = passing[: cell.keep]
        summaries.append(CellSummary(
            id=cid, person=cell.person, look=cell.look, keep=cell.keep, candidates=len(mine),
            passed=sum(_passes(i) for i in checked), failed_requests=failed.get(cid, 0),
            rerolled=sum(1 for r in rows if (r.request.options.get("batch") or {}).get("cell") == cid
                         and int((r.request.options.get("batch") or {}).get("round", 0)) > 0),
            kept=[i.id for i in kept], kept_files=[i.out_path or i.path for i in kept],
            upscaled_files=[u.out_path or u.path for i in kept if (u := _upscaled(ledger, run.id, i)) is not None],
        ))
    all_images = [i for m in images.values() for i in m]
    checked_all = [i for i in all_images if i.check_overall is not None]
    times = sorted(i.created_at for i in all_images)
    seconds = (max(times) - run.created_at) if times else 0.0
    return BatchReport(
        run_id=run.id, name=run.name or run.id, people=len({c.person for c in cells.values()}), cells=summaries,
        requests=len(rows), images=len(all_images), failed=sum(failed.values()), rerolls=rerolls,
        checked=len(checked_all), passed=sum(_passes(i) for i in checked_all), kept=sum(len(c.kept) for c in summaries),
        upscaled=sum(len(c.upscaled_files) for c in summaries),
        short_cells=[c.id for c in summaries if c.short], spent_usd=ledger.spent(run.id).usd,
        sandbox_usd=ledger.spent(run.id, sandbox=True).usd, seconds=round(seconds, 3),
        images_per_minute=round(len(all_images) / seconds * 60, 2) if seconds > 0 else 0.0,
    )


def _report_markdown(report: BatchReport) -> str:
    rate = f"{report.pass_rate:.0%}" if report.pass_rate is not None else "n/a (no checklist)"
    lines = [
        f"# Batch {report.name} ({report.run_id})", "",
        f"- people: {report.people} · cells (person × look): {len(report.cells)}",
        f"- requests: {report.requests} · images: {report.images} · failed: {report.failed} · re-rolls: {report.rerolls}",
        f"- checked: {report.checked} · passed: {report.passed} · pass rate: {rate}",
        f"- kept: {report.kept}" + (f" · upscaled: {report.upscaled}" if report.upscaled else "") + (f" · short of their keep: {', '.join(report.short_cells)}" if report.short_cells else ""),
        f"- cost: ${report.spent_usd:.3f}" + (f" (+ sandbox ${report.sandbox_usd:.3f}, not money)" if report.sandbox_usd else ""),
        f"- time: {report.seconds:.1f}s · {report.images_per_minute:.1f} images/minute", "",
        "| cell | person | look | candidates | passed | failed | re-rolled | kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report.cells:
        lines.append(f"| {c.id} | {c.person} | {c.look} | {c.candidates} | {c.passed} | {c.failed_requests} | "
                     f"{c.rerolled} | {len(c.kept)}/{c.keep} |")
    return "\n".join(lines) + "\n"


def _write_outputs(ledger: Ledger, run_id: str, report: BatchReport, out: Path) -> None:
    """One contact sheet per person (every candidate, best first, kept ones badged) and the report."""
    from .grids import Tile, contact_sheet

    run = ledger.run(run_id)
    images, _ = _cell_images(ledger, run_id)
    kept = {i for c in report.cells for i in c.kept}
    for person in dict.fromkeys(c.person for c in report.cells):
        tiles = []
        for c in (c for c in report.cells if c.person == person):
            for image in _ranked(images.get(c.id, [])):
                path = image.out_path if image.out_path and Path(image.out_path).is_file() else image.path
                tiles.append(Tile(path=path, lines=(f"{c.look} · seed {image.seed}",
                                                    f"check {image.check_overall or 'n/a'} · "
                                                    f"{'KEPT' if image.id in kept else 'not kept'}"),
                                  status=image.check_overall, badge="KEPT" if image.id in kept else None))
        if tiles:
            folder = out / _slug(person)
            folder.mkdir(parents=True, exist_ok=True)
            contact_sheet(tiles, folder / "contact-sheet.png", title=f"{person} · {run.name or run.id} · batch {run.id}")
    atomic_write_text(out / "batch-report.json", json.dumps(report.model_dump(mode="json"), indent=2))
    atomic_write_text(out / "batch-report.md", _report_markdown(report))


class BatchProgress(BaseModel):
    """Done / failed / rate / ETA of a batch, read from the ledger (the CLI and the web show the same)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    name: str
    status: str
    total: int
    done: int
    failed: int
    in_flight: int
    images_per_minute: float
    eta_s: float | None
    spent_usd: float
    sandbox_usd: float

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total


def batch_progress(ledger: Ledger, run_id: str, *, now: float | None = None) -> BatchProgress:
    run = ledger.run(run_id)
    counts, _ = ledger.request_counts(run.id)
    done = counts.get("done", 0)
    failed = counts.get("failed", 0) + counts.get("skipped", 0)
    total = sum(counts.values())
    times = sorted(i.created_at for i in ledger.images(run_id=run.id, limit=1_000_000) if i.operation == "generate")
    now = now or time.time()
    rate = 0.0
    if times:
        span = max(now if run.status == "running" else times[-1], times[-1]) - run.created_at
        rate = len(times) / span * 60 if span > 0 else 0.0
    left = total - done - failed
    eta = (left / rate * 60) if rate > 0 and left > 0 else (0.0 if left == 0 else None)
    return BatchProgress(
        run_id=run.id, name=run.name or run.id, status=run.status, total=total, done=done, failed=failed,
        in_flight=counts.get("submitting", 0) + counts.get("accepted", 0), images_per_minute=round(rate, 2),
        eta_s=round(eta, 1) if eta is not None else None, spent_usd=ledger.spent(run.id).usd,
        sandbox_usd=ledger.spent(run.id, sandbox=True).usd,
    )


def recent_batches(ledger: Ledger, limit: int = 20) -> list[BatchProgress]:
    """The latest batches with their progress (the web jobs page)."""
    return [batch_progress(ledger, r.id) for r in ledger.runs(limit=200) if r.kind == "batch"][:limit]


def history_seconds(ledger: Ledger, models: Sequence[str]) -> dict[str, float]:
    """Median seconds per image this studio measured for each model (its recent results)."""
    found: dict[str, float] = {}
    for model in dict.fromkeys(models):
        times = [i.timings.get("total_s") or sum(v for k, v in i.timings.items() if k.endswith("_s"))
                 for i in ledger.images(model=model, limit=50) if i.operation == "generate" and not i.sandbox]
        times = [t for t in times if t]
        if times:
            found[model] = statistics.median(times)
    return found


def require_batch(run: RunRow) -> None:
    if run.kind != "batch":
        raise StudioError(f"run {run.id} is a {run.kind}, not a batch", hint="give the run id of a 'portrait batch'")
