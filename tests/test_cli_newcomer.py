"""A new user's first hour with `portrait`, against the sandboxes: every mistake gets two lines and
the right exit code, names with brackets survive, tables fit 80 columns without cutting an id,
and nothing is recorded (or spent) before a bad value is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portrait_studio.catalog import all_models
from portrait_studio.cli import app, run_cli
from portrait_studio.errors import LedgerError, NetworkError, UsageError
from portrait_studio.ledger import Ledger

BRIEFS = Path(__file__).resolve().parents[1] / "src" / "portrait_studio" / "presets" / "briefs"
BRIEF = BRIEFS / "rembrandt-studio-headshot.yaml"
ID = re.compile(r"\b(run|img)_[0-9A-Z]*")


def _runs(home: Path) -> int:
    db = home / "ledger.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


# --- the command line itself -------------------------------------------------------------------


def test_version_and_short_help(cli) -> None:
    code, out, err = cli("--version")
    assert code == 0 and re.fullmatch(r"portrait \d+\.\d+\.\d+\n", out)
    code, out, _ = cli("-h")
    assert code == 0 and "Usage: portrait" in out and "Exit codes: 0 ok, 1 checks failed, 2 usage" in " ".join(out.split())


def test_a_typo_in_a_command_or_an_option_says_did_you_mean(cli) -> None:
    code, _, err = cli("shot")
    assert code == 2 and "no command 'shot'" in err and "did you mean 'shoot'" in err
    code, _, err = cli("shoot", str(BRIEF), "--sed", "1")
    assert code == 2 and "no option --sed" in err and "did you mean --seed" in err


def test_an_option_of_another_command_is_named_instead_of_a_far_fetched_one_of_this_command(cli) -> None:
    """`portrait shoot --lightning` once got "did you mean --weights?": shoot has no lighting option;
    the round after a shoot (`portrait vary`) has `--lighting`, and the fix says so."""
    code, _, err = cli("shoot", str(BRIEF), "--lightning", "clamshell")
    assert code == 2 and "no option --lightning" in err
    assert "'portrait vary' has --lighting" in err and "--weights" not in err
    code, _, err = cli("shoot", str(BRIEF), "--sed", "1")  # a near spelling of its own option still wins
    assert "did you mean --seed" in err and "has --" not in err


def test_eof_at_the_licence_prompt_names_the_option_that_answers_it(cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = cli("local", "licence", "flux-1-dev")
    assert code == 2 and "--yes" in err and "Traceback" not in err


def test_the_licence_is_shown_verbatim_with_its_brackets(cli) -> None:
    code, out, _ = cli("local", "licence", "flux-1-dev", "--yes")
    assert code == 0 and "FLUX.1 [dev] Non-Commercial License" in out


def test_help_text_keeps_brackets(cli) -> None:
    _, out, _ = cli("fix", "--help")
    assert "FLUX.1 [dev]" in " ".join(out.split())


def test_verify_with_a_missing_trust_file_is_a_usage_error(cli, tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    code, out, err = cli("verify", img, "--trust", tmp_path / "missing.pem")
    assert code == 2 and "--trust" in err and "missing.pem" in err and "Traceback" not in out + err


def test_exit_codes_follow_the_error_tree(monkeypatch, capsys) -> None:
    import typer

    boom = typer.Typer()

    @boom.command()
    def go(kind: str) -> None:
        raise {"usage": UsageError("bad", field="--x", hint="fix it"), "network": NetworkError("down"),
               "bug": ZeroDivisionError("oops"), "ctrl-c": KeyboardInterrupt(), "os": PermissionError(13, "Permission denied", "/x")}[kind]

    codes = {}
    for kind in ("usage", "network", "bug", "ctrl-c", "os"):
        with pytest.raises(SystemExit) as exc:
            run_cli(boom, [kind])
        codes[kind] = exc.value.code
    err = capsys.readouterr().err
    assert codes == {"usage": 2, "network": 3, "bug": 70, "ctrl-c": 130, "os": 2}
    assert "PORTRAIT_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("PORTRAIT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run_cli(boom, ["bug"])


# --- values refused before anything is recorded -------------------------------------------------


@pytest.mark.parametrize("args,named", [
    (["--seeds", "0"], "--seeds"), (["--seeds", "17"], "--seeds"), (["--seed", "-1"], "--seed"),
    (["--seed", "4294967296"], "--seed"), (["--seed", "2^32"], "--seed"), (["--seed", str(2**63 + 5)], "--seed"),
    (["--budget", "nan"], "--budget"), (["--budget", "inf"], "--budget"), (["--budget", "-1"], "--budget"),
    (["--sandbox", "maybe"], "auto"),
])
def test_bad_values_are_refused_before_a_run_is_recorded(cli, studio_home: Path, args: list[str], named: str) -> None:
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", *args)
    assert code == 2 and named in err and "Traceback" not in out + err, err
    assert _runs(studio_home) == 0


def test_sandbox_never_without_a_key_fails_before_a_run_exists(cli, studio_home: Path) -> None:
    code, _, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seed", "1", "--sandbox", "never")
    assert code == 3 and "BFL_API_KEY" in err
    assert _runs(studio_home) == 0


@pytest.mark.parametrize("args,named", [
    (["serve", "--port", "99999"], "--port"), (["serve", "--token", "pässwörd-pässwörd"], "--token"),
    (["serve", "--token", "            "], "--token"), (["keys", "set", "acme", "--value", "k"], "PROVIDER"),
    (["keys", "set", "bfl", "--value", "   "], "--value"), (["sandbox", "--port", "-1"], "--port"),
    (["resume", ""], "RUN"), (["resume", "%"], "RUN"), (["pick", "%", "_"], "RUN"), (["log", "--run", "%"], "--run"),
])
def test_bad_input_is_named(cli, args: list[str], named: str) -> None:
    code, out, err = cli(*args)
    assert code == 2 and named in err and "Traceback" not in out + err, err


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00binary", "subject: {description: caf\xe9}".encode("latin-1"),
                                     b"   \n\n"])
def test_a_brief_that_is_not_utf8_text_is_refused(cli, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "brief.yaml"
    path.write_bytes(content)
    code, out, err = cli("compile", path, "-m", "flux-1.1-pro")
    assert code == 2 and "BRIEF" in err and "Traceback" not in out + err


def test_compare_with_one_model_says_so_in_english(cli) -> None:
    code, _, err = cli("compare", BRIEF, "-m", "flux-1.1-pro", "--seed", "1")
    assert code == 2 and "only one model" in err and "1 models" not in err


@pytest.mark.parametrize("model,size", [("flux-1.1-pro-ultra", "3:4 at 4 MP"), ("flux-kontext-pro", "3:4 at 1 MP")])
def test_compile_shows_the_aspect_ratio_and_megapixels_not_question_marks(cli, model: str, size: str) -> None:
    code, out, _ = cli("compile", BRIEF, "-m", model)
    assert code == 0 and size in out and "?×?" not in out


def test_models_shows_bracketed_names_and_every_id_whole(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("models")
    assert code == 0
    for name in ("FLUX1.1 [pro]", "FLUX.2 [flex]", "FLUX.2 [max]", "FLUX.1 Kontext [pro]"):
        assert name in out
    words = set(out.split())
    assert {m.id for m in all_models()} <= words
    assert max(len(line) for line in out.splitlines()) <= 80


def test_the_ledger_takes_exact_ids_or_a_unique_prefix_only(studio_home: Path) -> None:
    with Ledger(studio_home / "ledger.db") as ledger:
        a = ledger.create_run("shoot", run_id="run_AAAA1")
        ledger.create_run("shoot", run_id="run_AAAA2")
        for ref in ("", "%", "_", "AAAA1", "run_AAAA"):
            with pytest.raises(LedgerError):
                ledger.run(ref)
        assert ledger.run("run_AAAA1").id == a and ledger.run("run_AAAA2").id == "run_AAAA2"
        for ref in ("", "%", "_"):
            with pytest.raises(LedgerError):
                ledger.image(ref)


# --- a sandbox shoot, seen at 80 columns -----------------------------------------------------------


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(*args: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_cli(app, [str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One sandbox shoot (2 seeds), a pick, a vary and a 2-model compare in one studio."""
    home = tmp_path_factory.mktemp("studio")
    with _env(COLUMNS="80", PORTRAIT_STUDIO_HOME=str(home), BFL_API_KEY="", FAL_KEY="", REPLICATE_API_TOKEN=""):
        shoot = _run("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "2", "--sandbox", "always", "--json")
        assert shoot[0] == 0, shoot
        data = json.loads(shoot[1])
        run, image = data["run_id"], data["images"][0]["id"]
        pick = _run("pick", run, image)
        vary = _run("vary", run, "--lighting", "clamshell", "--sandbox", "always")
        compare = _run("compare", BRIEF, "-m", "flux-1.1-pro", "-m", "flux-2-pro", "--seed", "7", "--sandbox", "always")
        resume = _run("resume", run, "--sandbox", "always")
        log = _run("log", "-n", "50")
        files = [i["out_path"] for i in data["images"]]
        verify = _run("verify", *files)
        check = _run("check", files[0])
        lineage = _run("lineage", image)
    return {"home": home, "run": run, "image": image, "pick": pick, "vary": vary, "compare": compare,
            "resume": resume, "log": log, "verify": verify, "check": check, "lineage": lineage, "data": data}


def _a_path(line: str) -> bool:
    return line.lstrip().startswith("/") and " " not in line.strip()


def _ids_whole(text: str) -> list[str]:
    found = ID.findall(text)
    cut = [m.group(0) for m in ID.finditer(text) if len(m.group(0)) != 30]
    assert found and not cut, cut
    return [m.group(0) for m in ID.finditer(text)]


@pytest.mark.parametrize("step", ["pick", "vary", "compare", "resume", "log", "verify", "check", "lineage"])
def test_every_table_fits_80_columns_and_prints_ids_whole(shot: dict[str, Any], step: str) -> None:
    code, out, err = shot[step]
    assert code in (0, 1), (code, err)
    assert "Traceback" not in out + err
    # a path may run past 80 on a line of its own (never cut, so it can be copied); nothing else may
    assert max(len(line) for line in out.splitlines() if not _a_path(line)) <= 80, out
    if step in ("verify", "check"):
        return  # they print file names, not ids
    ids = _ids_whole(out)
    if step in ("resume", "log"):
        assert shot["run"] in ids and shot["image"] in ids


def test_compare_prints_a_table_not_markdown(shot: dict[str, Any]) -> None:
    _, out, _ = shot["compare"]
    assert "|---" not in out and "| Model |" not in out
    assert "FLUX1.1 [pro]" in out and "FLUX.2 [pro]" in out


def test_the_hint_after_vary_names_real_options_and_a_new_value(shot: dict[str, Any]) -> None:
    from portrait_studio.brief import VARIABLE_ELEMENTS

    _, out, _ = shot["vary"]
    suggested = re.findall(r"portrait vary \S+ --([a-z-]+) (\S+)", out)
    assert suggested, out
    for element, value in suggested:
        assert element in VARIABLE_ELEMENTS
        assert (element, value) != ("lighting", "clamshell")


def test_vary_offers_exactly_the_elements_the_brief_can_change(cli) -> None:
    from portrait_studio.brief import VARIABLE_ELEMENTS

    _, out, _ = cli("vary", "--help")
    offered = set(re.findall(r"^\s+--([a-z-]+)", out, re.M)) - {"force", "budget", "sandbox", "weights", "json", "home", "help"}
    assert offered == set(VARIABLE_ELEMENTS)


def test_resuming_a_finished_run_says_so_and_spends_nothing(shot: dict[str, Any]) -> None:
    code, out, err = shot["resume"]
    said = " ".join(out.split())
    assert code == 0 and "already complete" in said and "nothing spent now" in said
    assert "3/2" not in err and "4/2" not in err and " in 0.0s" not in out


def test_the_cli_table_and_the_contact_sheet_rank_the_same_way(shot: dict[str, Any]) -> None:
    from portrait_studio import ranking

    with Ledger(shot["home"] / "ledger.db") as ledger:
        rows = ledger.images(run_id=shot["run"], limit=100)
    expected = [r.id for r in ranking.rank(rows)]
    assert [i["id"] for i in shot["data"]["images"]] == expected
    run_json = json.loads((Path(shot["data"]["out_dir"]) / "run.json").read_text())
    assert run_json["run_id"] == shot["run"]


def test_the_log_prints_every_model_id_whole_at_80_columns(cli, monkeypatch) -> None:
    """`portrait log` folded 'flux-1.1-pro-ultra' into 'flux-1.1-pro-u' / 'ltra' next to a SANDBOX cost."""
    monkeypatch.setenv("COLUMNS", "80")
    code, _, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro-ultra", "--seeds", "1", "--sandbox", "always")
    assert code in (0, 1), err
    code, out, _ = cli("log", "-n", "5")
    assert code == 0 and "flux-1.1-pro-ultra" in out and "SANDBOX" in out
    assert max(len(line) for line in out.splitlines()) <= 80, out
