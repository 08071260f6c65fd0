"""`portrait resume` finishes a run of any kind: a fix interrupted after the provider accepted it is
composited and labelled, a series continues with its next shot — and nothing is paid twice. Auto-fix
keeps a result only when the checklist improves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from _engine_helpers import CONSENT, consent
from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.labels import COMPOSITE_SOURCE_TYPE, verify
from portrait_studio.ledger import Ledger
from portrait_studio.providers.base import OnAccepted, Provider
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.records import Request, Result, Ticket
from portrait_studio.testing.photos import astronaut
from portrait_studio.testing.sandbox import start_sandbox

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
FAST = {"poll_interval": 0.02, "max_poll_interval": 0.05}


class Wrapper(Provider):
    """The sandbox client, with a hook after acceptance (die like kill -9) or on the image (vandalise it)."""

    hosted = False

    def __init__(self, inner: Provider, *, die_at: set[int] = frozenset(), vandalise: bool = False) -> None:  # type: ignore[assignment]
        self.inner, self.provider_id = inner, inner.provider_id  # type: ignore[misc]
        self.sandbox = inner.sandbox
        self.die_at, self.vandalise, self.count = set(die_at), vandalise, 0

    def check(self, request: Request) -> None:
        self.inner.check(request)

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        number = self.count
        self.count += 1

        async def accepted(ticket: Ticket) -> None:
            if on_accepted:
                await on_accepted(ticket)
            if number in self.die_at:
                raise KeyboardInterrupt  # the process dies right after the provider took (and charged) the task

        result = await self.inner.submit(request, accepted)
        if self.vandalise:  # the repair changes nothing (a denoise too low to matter): the same pixels come back
            result = result.model_copy(update={"image": Path(request.images[0].path).read_bytes()})
        return result

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        return await self.inner.resume(ticket, request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "collins.png"
    astronaut().crop((100, 0, 360, 260)).resize((256, 256)).save(path)
    return path


def _engine(studio: Studio, ledger: Ledger, provider: Provider, checker: Any = None) -> Engine:
    from portrait_studio.finishing.lineage import LabelSettings

    return Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir, providers={"bfl": provider},
                  labels=LabelSettings.from_studio(studio), checker=checker, work_dir=studio.home / "work")


def test_a_fix_killed_after_the_provider_accepted_it_resumes_into_a_labelled_composite(studio: Studio,
                                                                                       photo: Path) -> None:
    from portrait_studio.finishing.fix import fix_region

    consent(studio, photo)
    with start_sandbox("bfl", latency=0.05) as sb, Ledger(studio.ledger_path) as ledger:
        dying = Wrapper(BflProvider.for_sandbox(sb, **FAST), die_at={0})
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(fix_region(_engine(studio, ledger, dying), photo, "teeth"))
        (run,) = ledger.runs()
        assert [r.status for r in ledger.requests(run.id)] == ["accepted"] and sb.stats.paid == 1
        report = asyncio.run(_engine(studio, ledger, BflProvider.for_sandbox(sb, **FAST)).execute(run.id))
        assert report.done and sb.stats.paid == 1  # collected, not paid again
        fixed = ledger.derived_in_run(run.id, "fix")
        assert fixed is not None and fixed.out_path and Path(fixed.out_path).is_file()
        label = verify(fixed.out_path)
        assert label.labelled and label.digital_source_type == COMPOSITE_SOURCE_TYPE
        assert ledger.run(run.id).status == "done"
        assert [r.operation for r in ledger.lineage(fixed.image_sha256)] == ["fix", "import"]


def test_a_series_killed_mid_shot_continues_with_the_next_shot_on_resume(studio: Studio, photo: Path) -> None:
    from portrait_studio.series import example_shots_path, load_shots, plan_series, run_series, series_report

    shots = load_shots(example_shots_path())[:3]
    plan = plan_series(BRIEF, shots, "anchors", photo, model="flux-1.1-pro", provider="bfl")
    with start_sandbox("bfl", latency=0.02) as sb, Ledger(studio.ledger_path) as ledger:
        dying = Wrapper(BflProvider.for_sandbox(sb, **FAST), die_at={1})
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(run_series(_engine(studio, ledger, dying), plan, rights=CONSENT))
        (run,) = ledger.runs()
        assert [r.status for r in ledger.requests(run.id)] == ["done", "accepted"]
        asyncio.run(_engine(studio, ledger, BflProvider.for_sandbox(sb, **FAST)).execute(run.id))
        report = series_report(ledger, run.id)
        assert len(report.shots) == 3 and report.all_passed
        assert sb.stats.paid == 3 and sb.stats.paid_twice == []  # three shots, each paid once
        assert [r.status for r in ledger.requests(run.id)] == ["done"] * 3
        for shot in report.shots:
            assert verify(shot.path).labelled
        assert ledger.run(run.id).status == "done"


def test_auto_fix_without_improvement_keeps_the_original_and_says_so(studio: Studio, photo: Path) -> None:
    from portrait_studio.analysis import analyze
    from portrait_studio.finishing.fix import auto_fix
    from portrait_studio.testing.defects import blur_eyes

    bad = photo.with_name("blurred.png")
    an = analyze(photo)
    Image.fromarray(blur_eyes(an.rgb, an)).save(bad)
    consent(studio, bad)
    with start_sandbox("bfl", latency=0.02) as sb, Ledger(studio.ledger_path) as ledger:
        vandal = Wrapper(BflProvider.for_sandbox(sb, **FAST), vandalise=True)  # no repair improves anything
        report = asyncio.run(auto_fix(_engine(studio, ledger, vandal), bad, max_tries=2))
    assert report.rounds and not report.rounds[0].kept
    assert report.rounds[0].score_after <= report.rounds[0].score_before
    assert report.kept_original and report.final == str(bad) and report.stopped == "no_improvement"
    assert len(report.rounds) == 1  # it did not spend on a second round that started from a worse image
