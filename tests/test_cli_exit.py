"""The `portrait` command ends as soon as its work is done.

Tearing down the checklist's native libraries (onnxruntime, mediapipe and ~1,800 modules) used to
add 0.3–0.6 s after every checked shoot had printed its result. The console command now leaves
without the interpreter's module teardown — but only once nothing can be lost: exit handlers
run, output is flushed, a working thread is waited for, and profilers still get their results.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _portrait(script: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the console command's entry point in a fresh interpreter, after `script` set things up."""
    code = textwrap.dedent(script) + textwrap.dedent(f"""
        sys.argv = ["portrait", *{list(args)!r}]
        from portrait_studio.cli import main
        main()
    """)
    env = {**os.environ, "PYTHONPATH": SRC, "PORTRAIT_STUDIO_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-c", "import sys\n" + code], env=env, capture_output=True, text=True,
                          timeout=120)


TEARDOWN_WITNESS = """
    import atexit, os
    class Witness:
        def __del__(self, write=os.write):  # bound now: the teardown may have cleared `os` by then
            write(1, b"module teardown ran\\n")
    witness = Witness()  # a module global: only the interpreter's teardown deletes it
    atexit.register(lambda: print("exit handler ran", flush=True))
"""


def test_a_finished_command_skips_the_teardown_but_runs_exit_handlers_and_flushes(tmp_path: Path) -> None:
    done = _portrait(TEARDOWN_WITNESS, "--version", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "portrait" in done.stdout  # printed and flushed through a pipe
    assert "exit handler ran" in done.stdout
    assert "module teardown ran" not in done.stdout


def test_the_exit_code_of_a_usage_error_survives(tmp_path: Path) -> None:
    done = _portrait(TEARDOWN_WITNESS, "shoot", str(tmp_path / "missing.yaml"), "--model", "flux-1.1-pro",
                     tmp_path=tmp_path)
    assert done.returncode == 2
    assert "error:" in done.stderr and "missing.yaml" in done.stderr
    assert "module teardown ran" not in done.stdout


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "written.txt"
    done = _portrait(f"""
        import threading, time
        def late_write():
            time.sleep(0.5)
            open({str(marker)!r}, "w").write("done")
        threading.Thread(target=late_write).start()
    """, "--version", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "done"


def test_a_profiler_still_gets_its_results(tmp_path: Path) -> None:
    done = _portrait(TEARDOWN_WITNESS + """
    sys.setprofile(lambda *args: None)
    """, "--version", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "module teardown ran" in done.stdout  # the normal exit: cProfile writes its file after us


def test_opening_images_in_threads_keeps_the_warning_filters_other_threads_add(tmp_path: Path) -> None:
    """`warnings.catch_warnings()` around each image open restored the whole filter list on leaving,
    dropping filters another thread added meanwhile — that is how requests' own "ignore" filter
    got lost while the checklist opened images in its worker threads, and a DependencyWarning
    reached the terminal."""
    import threading
    import warnings

    from PIL import Image

    from portrait_studio.imaging import open_image

    picture = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(picture)
    stop = threading.Event()

    def keep_opening() -> None:
        while not stop.is_set():
            open_image(picture)

    markers = [f"portrait-test-marker-{i}" for i in range(300)]
    opener = threading.Thread(target=keep_opening)
    interval = sys.getswitchinterval()
    with warnings.catch_warnings():  # this test's own filters go when it ends
        sys.setswitchinterval(1e-5)
        opener.start()
        try:
            for marker in markers:
                warnings.filterwarnings("ignore", message=marker)
        finally:
            stop.set()
            opener.join()
            sys.setswitchinterval(interval)
        kept = {str(f[1].pattern) for f in warnings.filters if f[1] is not None}
    assert [m for m in markers if m not in kept] == []


def _run_in_process(app: Any, args: list[str], capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `portrait ARGS` run by `app` in this process."""
    from portrait_studio.cli import _run

    monkeypatch.setattr(sys, "argv", ["portrait", *args])
    code = 0
    try:
        _run.run_cli(app)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_running_one_command_builds_only_that_command_and_it_behaves_as_in_the_whole_app(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`portrait shoot ...` does not pay for building the parsers of every other command, and
    nothing a user sees differs: the help, a usage error and its exit code are the same."""
    import typer.main

    from portrait_studio.cli import _run, app

    whole = typer.main.get_command(app)
    names = sorted(whole.commands)  # type: ignore[attr-defined]
    assert len(names) > 20

    def run(args: list[str], pruned: bool) -> tuple[int, str, str]:
        monkeypatch.setattr(_run, "named_command_only", real if pruned else (lambda a, argv: a))
        return _run_in_process(app, args, capsys, monkeypatch)

    real = _run.named_command_only
    for name in names:
        built = typer.main.get_command(real(app, [name, "--help"]))
        assert sorted(built.commands) == [name]  # type: ignore[attr-defined]
        for args in ([name, "--help"], [name, "--no-such-option"]):
            assert run(args, pruned=True) == run(args, pruned=False), args
    # anything that is not one command's name gets the whole app: help, a typo's suggestion
    for args in (["--help"], ["shot"], []):
        assert real(app, args) is app
    assert run(["shot"], pruned=True)[2] == run(["shot"], pruned=False)[2] and "shoot" in run(["shot"], True)[2]


def test_every_command_is_found_in_the_module_the_lean_app_imports_for_it() -> None:
    """`portrait NAME ...` imports only the module COMMANDS names for NAME: that module registers
    exactly the commands COMMANDS gives it, and together they are the whole app."""
    import typer.main

    from portrait_studio import cli

    whole = typer.main.get_command(cli.app)
    assert sorted(cli.COMMANDS) == sorted(whole.commands)  # type: ignore[attr-defined]
    for module in cli.COMMAND_MODULES:
        built = typer.main.get_command(cli.build_app([module]))
        assert sorted(built.commands) == sorted(n for n, m in cli.COMMANDS.items() if m == module), module  # type: ignore[attr-defined]


def test_each_command_runs_the_same_in_its_lean_app_as_in_the_whole_app(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Help, a usage error and its exit code are the same whichever app runs the command; `--help`,
    a typo and shell completion get the whole app (all commands listed, "did you mean")."""
    from portrait_studio import cli

    def run(app: Any, args: list[str]) -> tuple[int, str, str]:
        return _run_in_process(app, args, capsys, monkeypatch)

    for name in sorted(cli.COMMANDS):
        for args in ([name, "--help"], [name, "--no-such-option"]):
            lean = cli.app_for(args)
            assert lean is not cli.app
            assert run(lean, args) == run(cli.app, args), args
    for args in (["--help"], ["shot"], []):
        assert cli.app_for(args) is cli.app
    assert run(cli.app_for(["--version"]), ["--version"]) == run(cli.app, ["--version"])
    monkeypatch.setenv("_PORTRAIT_COMPLETE", "complete_bash")
    assert cli.app_for(["check", "x.png"]) is cli.app


def test_checking_a_photo_imports_neither_the_ledger_nor_the_web_server(tmp_path: Path) -> None:
    """`portrait check` reads a photo and prints a checklist: it has no use for SQLAlchemy (the
    ledger) or FastAPI (the studio's server), which every command used to import."""
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 110, 100)).save(tmp_path / "plain.png")
    done = _portrait("""
        import atexit, sys
        atexit.register(lambda: print("loaded:", sorted(m for m in ("sqlalchemy", "fastapi", "alembic") if m in sys.modules)))
    """, "check", str(tmp_path / "plain.png"), "--json", tmp_path=tmp_path)
    assert "loaded: []" in done.stdout, done.stdout + done.stderr


def test_no_usage_line_doubles_the_dots_of_a_repeatable_argument(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`portrait check` once said `usage: portrait check [OPTIONS] IMAGE......`: the metavar had its
    own dots and the parser adds its own to an argument that takes several values."""
    import re

    import click
    import typer.main

    from portrait_studio import cli
    from portrait_studio.cli import _run

    whole = typer.main.get_command(cli.app)
    for name in sorted(cli.COMMANDS):
        command = whole.commands[name]  # type: ignore[attr-defined]
        needs_one = any(isinstance(p, click.Argument) and p.required for p in command.params)
        # the help's usage line; and, where an argument is required, the missing argument's "fix: usage: ..."
        # (commands that need none would run: `portrait sandbox` serves until stopped)
        for args in ([name, "--help"], [name]) if needs_one else ([name, "--help"],):
            monkeypatch.setattr(sys, "argv", ["portrait", *args])
            with contextlib.suppress(SystemExit):
                _run.run_cli(cli.app)
            out, err = capsys.readouterr()
            assert not re.search(r"\.\.\.\W?\.\.\.", out + err), (args, out + err)
