"""Every command and subcommand, found from the app itself, fed the mistakes a new user makes.

For each one: --help, no arguments, an unknown option, and for every file it reads a missing
file, an empty file and a folder. The user must see two lines (what is wrong, naming the
argument, and the fix), never a traceback, and exit code 2 (0 for --help).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from portrait_studio.cli import app

ROOT = typer.main.get_command(app)


def _walk(cmd: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


ALL = list(_walk())
GROUPS = [(p, c) for p, c in ALL if hasattr(c, "commands")]
COMMANDS = [(p, c) for p, c in ALL if not hasattr(c, "commands")]


def _id(item: tuple[tuple[str, ...], Any]) -> str:
    return " ".join(item[0]) or "portrait"


def _display(param: Any) -> str:
    """How the error must name a parameter: its long option, or its metavar."""
    if param.param_type_name == "option":
        return max(param.opts, key=len)
    return (param.metavar or param.name).upper().strip("{}<>.")


def _is_path(param: Any) -> bool:
    return bool(param.type_descriptor.is_path)


def _info(param: Any) -> Any:
    return param.type_descriptor.parameter_info


def _file_params() -> list[tuple[tuple[str, ...], Any, Any]]:
    return [(p, c, param) for p, c in COMMANDS for param in c.params if _is_path(param)]


FILE_PARAMS = _file_params()
INPUTS = [x for x in FILE_PARAMS if _info(x[2]).exists]
NO_DIRS = [x for x in FILE_PARAMS if not _info(x[2]).dir_okay]


def _argv(path: tuple[str, ...], cmd: Any, param: Any, value: str) -> list[str]:
    """The command line that gives `param` the value first, so it is the one checked first."""
    if param.param_type_name == "option":
        return [*path, param.opts[0], value]
    before = []
    for p in cmd.params:
        if p is param:
            break
        if p.param_type_name == "argument":
            before.append("x")
    return [*path, *before, value]


def _assert_usage_error(result: tuple[int, str, str], *names: str) -> None:
    code, out, err = result
    text = out + err
    assert "Traceback" not in text, text
    assert code == 2, (code, text)
    assert "error:" in err and "fix:" in err, text
    assert any(n in err for n in names), (names, err)


def test_the_walk_found_every_command() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"shoot", "compare", "vary", "resume", "brief new", "keys set", "local licence", "verify"} <= names
    assert len(COMMANDS) >= 25 and INPUTS and NO_DIRS


@pytest.mark.parametrize("item", ALL, ids=_id)
def test_help_works_with_dash_h_and_double_dash_help(cli, item: Any) -> None:
    path, _ = item
    for flag in ("--help", "-h"):
        code, out, err = cli(*path, flag)
        assert code == 0 and "Usage:" in out and "Traceback" not in out + err, (flag, out, err)


@pytest.mark.parametrize("item", COMMANDS, ids=_id)
def test_every_command_has_json_output(item: Any) -> None:
    _, cmd = item
    assert any("--json" in p.opts for p in cmd.params)


@pytest.mark.parametrize("item", ALL, ids=_id)
def test_an_unknown_option_is_a_usage_error(cli, item: Any) -> None:
    path, _ = item
    _assert_usage_error(cli(*path, "--no-such-option"), "--no-such-option")


@pytest.mark.parametrize("item", GROUPS, ids=_id)
def test_a_group_without_a_command_shows_its_help_and_exits_2(cli, item: Any) -> None:
    code, out, err = cli(*item[0])
    assert code == 2 and "Commands:" in out and "Traceback" not in out + err


REQUIRED = [(p, c) for p, c in COMMANDS if any(param.required for param in c.params)]


@pytest.mark.parametrize("item", REQUIRED, ids=_id)
def test_no_arguments_names_the_first_missing_one(cli, item: Any) -> None:
    path, cmd = item
    required = [p for p in cmd.params if p.required]
    args = [p for p in required if p.param_type_name == "argument"]
    first = args[0] if args else required[0]
    _assert_usage_error(cli(*path), _display(first))


@pytest.mark.parametrize("item", INPUTS, ids=lambda x: f"{' '.join(x[0])} {_display(x[2])}")
def test_a_missing_input_file_is_named(cli, tmp_path: Path, item: Any) -> None:
    path, cmd, param = item
    missing = tmp_path / "no-such-file.yaml"
    _assert_usage_error(cli(*_argv(path, cmd, param, str(missing))), _display(param), str(missing))


@pytest.mark.parametrize("item", INPUTS, ids=lambda x: f"{' '.join(x[0])} {_display(x[2])}")
def test_an_empty_input_file_is_named(cli, tmp_path: Path, item: Any) -> None:
    path, cmd, param = item
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _assert_usage_error(cli(*_argv(path, cmd, param, str(empty))), _display(param))


@pytest.mark.parametrize("item", NO_DIRS, ids=lambda x: f"{' '.join(x[0])} {_display(x[2])}")
def test_a_folder_where_a_file_belongs_is_named(cli, tmp_path: Path, item: Any) -> None:
    path, cmd, param = item
    folder = tmp_path / "a-folder"
    folder.mkdir()
    _assert_usage_error(cli(*_argv(path, cmd, param, str(folder))), _display(param))
