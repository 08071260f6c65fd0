"""Running the app: every failure becomes two lines (what went wrong, how to fix it) and an exit code.

Exit codes (also in `portrait --help` and the README):

    0    ok
    1    the checks failed (check, verify, review, series, swap), or you declined a prompt
    2    usage or input error: an option, argument, file, brief or limit is wrong
    3    provider or network error: key refused, out of credits, moderated, connection dropped
    70   an unexpected error (a bug): one line here, the traceback with PORTRAIT_DEBUG=1
    130  interrupted (Ctrl-C); a paid run says how to resume it

Typer >= 0.20 ships its own copy of click (`typer._click`), whose exceptions are not the
`click` package's: catching `click.ClickException` catches nothing there. `_click_exceptions`
finds the module typer really uses.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, NoReturn

import typer
from rich.markup import escape

from ..errors import ProviderError, StudioError

__all__ = ["DEBUG_ENV", "EXIT_CODES", "EXIT_CODES_HELP", "exit_code_for", "leave", "run_cli"]

DEBUG_ENV = "PORTRAIT_DEBUG"

EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "checks failed",
    2: "usage or input error",
    3: "provider or network error",
    70: "unexpected error (a bug; PORTRAIT_DEBUG=1 shows the traceback)",
    130: "interrupted",
}
EXIT_CODES_HELP = "Exit codes: " + ", ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."


def exit_code_for(exc: StudioError) -> int:
    """3 for anything a provider or the network did; 2 for everything the user can fix in the input."""
    return 3 if isinstance(exc, ProviderError) else 2


def _click_exceptions() -> ModuleType:
    try:
        from typer._click import exceptions  # typer >= 0.20 vendors click
    except ImportError:  # pragma: no cover - older typer uses the click package
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def debug() -> bool:
    """PORTRAIT_DEBUG=1: tracebacks, and the native libraries' own log lines."""
    return _debug()


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def _err() -> Any:
    from ._common import err_console

    return err_console


def _say(error: str, fix: str | None) -> None:
    console = _err()
    console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
    if fix:
        console.print(f"[yellow]fix:[/] {escape(fix)}", highlight=False, soft_wrap=True)


def _exit(code: int) -> NoReturn:
    raise SystemExit(code)


def leave(code: object) -> NoReturn:
    """End the console command's process without the interpreter's module teardown.

    Once a command has finished (ledger closed, files renamed into place, output printed), the
    teardown of the checklist's native libraries (onnxruntime, mediapipe and their dependencies:
    1,800 modules) still takes 0.3–0.6 s, which the user waits for and nothing needs. Exit
    handlers still run (temporary folders, Ray, logging's own flush) and the standard streams are
    flushed. The normal exit is kept while a non-daemon thread is still working (it waits for it)
    and under a profiler or tracer (cProfile, coverage), which write their results after us.
    """
    import atexit
    import threading

    status = 0 if code is None else code
    if not isinstance(status, int):  # SystemExit("message"): printed, exit status 1, as Python does
        print(status, file=sys.stderr)
        status = 1
    main = threading.main_thread()
    if sys.getprofile() is not None or sys.gettrace() is not None \
            or any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        raise SystemExit(status)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:  # pragma: no cover - not CPython
        raise SystemExit(status)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr, getattr(_err(), "file", None)):
        flush = getattr(stream, "flush", None)
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`portrait … | head`)
            if flush is not None:
                flush()
    os._exit(status)


def _command_path(ctx: Any) -> str:
    return ctx.command_path if ctx is not None else "portrait"


def _param_name(param: Any) -> str:
    """How the user spells a parameter: --seed for an option, BRIEF for an argument."""
    if param is None:
        return "argument"
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")] or list(getattr(param, "opts", []))
    if getattr(param, "param_type_name", "") == "option" and opts:
        return opts[0]
    return (param.metavar or param.name or "argument").upper().strip("{}<>")


_ELSEWHERE_LIKENESS = 0.8


def _likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _option_elsewhere(option: str, where: str) -> tuple[str, str] | None:
    """(command, option) of another command whose option `option` most nearly spells (difflib
    ratio `_ELSEWHERE_LIKENESS` or more): `portrait shoot --lightning` means `portrait vary`'s
    `--lighting`, which the nearest option of `shoot` itself (`--weights`, ratio 0.6) does not
    tell. Reads the whole app: errors are rare."""
    if not option.startswith("--"):
        return None
    import typer.main

    from . import app as whole

    def commands(group: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, command in getattr(group, "commands", {}).items():
            yield f"{path} {name}", command
            yield from commands(command, f"{path} {name}")

    best: tuple[float, str, str] | None = None
    for path, command in commands(typer.main.get_command(whole), "portrait"):
        if path == where:
            continue
        for name in (o for p in command.params for o in [*p.opts, *p.secondary_opts] if o.startswith("--")):
            ratio = _likeness(option, name)
            if ratio >= _ELSEWHERE_LIKENESS and (best is None or ratio > best[0]):
                best = (ratio, path, name)
    return None if best is None else (best[1], best[2])


def _usage_error(exc: Any) -> tuple[str, str]:
    """(error, fix) for one of click's usage errors, in our words."""
    ce = _click_exceptions()
    ctx = exc.ctx
    where = _command_path(ctx)
    help_hint = f"see '{where} --help'"
    if isinstance(exc, ce.NoSuchOption):
        close = list(exc.possibilities or [])
        if not close and ctx is not None:
            names = [o for p in ctx.command.params for o in [*p.opts, *p.secondary_opts] if o.startswith("-")]
            close = difflib.get_close_matches(exc.option_name, names, n=3, cutoff=0.6)
        if exc.option_name in ("--version", "-V") and where != "portrait":
            return f"'{where}' has no option {exc.option_name}", "use 'portrait --version'"
        other = _option_elsewhere(exc.option_name, where)
        if other is not None and not any(_likeness(exc.option_name, c) >= _ELSEWHERE_LIKENESS for c in close):
            close = []  # a near spelling of another command's option beats a far one of this command's
        fix = f"did you mean {' or '.join(close)}? ({help_hint})" if close else help_hint
        if other is not None and not close:
            fix = f"'{other[0]}' has {other[1]} ({help_hint})"
        return f"'{where}' has no option {exc.option_name}", fix
    if isinstance(exc, ce.MissingParameter):
        name = _param_name(exc.param)
        what = (getattr(exc.param, "help", None) or "").split(" (")[0].rstrip(".")
        kind = "option" if name.startswith("-") else "argument"
        return (f"missing {kind} {name}" + (f" ({what})" if what else ""),
                f"usage: {where} {_usage_line(ctx)}; {help_hint}")
    if isinstance(exc, ce.BadParameter):
        name = _param_name(exc.param) if exc.param is not None else (exc.param_hint or "value")
        if isinstance(name, (list, tuple)):
            name = " / ".join(name)
        about = (getattr(exc.param, "help", None) or "").strip()
        return f"{name}: {_strip_invalid(exc.message)}", (f"{name}: {about} ({help_hint})" if about else help_hint)
    message = exc.format_message()
    if message.startswith("No such command"):
        # typer adds "Did you mean 'shoot'?": keep it as the fix
        head, _, tail = message.partition(". ")
        name = head.removeprefix("No such command").strip(" '\"")
        suggestion = tail.rstrip(".")
        suggestion = suggestion[:1].lower() + suggestion[1:]
        return f"'{where}' has no command '{name}'", (f"{suggestion} ({help_hint})" if tail else help_hint)
    return message.rstrip("."), help_hint


def _strip_invalid(message: str) -> str:
    """click's 'Invalid value for ...:' prefix repeats the option name we already print."""
    if message.startswith("Invalid value for") and ": " in message:
        message = message.split(": ", 1)[1]
    return message.removeprefix("Value error, ").replace("Input should be", "must be").rstrip(".")


def _usage_line(ctx: Any) -> str:
    if ctx is None:
        return "[OPTIONS]"
    pieces = ctx.command.collect_usage_pieces(ctx)
    return " ".join(p.replace("{", "").replace("}", "") for p in pieces)


def _os_error(exc: OSError) -> tuple[str, str]:
    name = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{reason}:{name}", "check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{name.strip()} is a folder, not a file", "give a file"
    if isinstance(exc, PermissionError):
        return f"{reason}:{name}", "check the permissions, or choose another --home / --out"
    return f"{reason}:{name}", "check the disk (space, permissions) and try again"


def completing() -> bool:
    """True when the shell asks for completions (click's `_PORTRAIT_COMPLETE`): they need every command."""
    return any(name.endswith("_COMPLETE") for name in os.environ)


def named_command_only(app: typer.Typer, args: list[str]) -> typer.Typer:
    """`app` with only the command (or command group) that `args` starts with, when it names one.

    Typer builds the parser of every command an app has before it runs one: 70 ms of type hints
    and signatures for all 33, and still those of the other commands of a module (`shoot` has
    five) in the app `cli.app_for` gives a command. The command a user runs is built the same
    way either way (same options, help and errors); anything else (`--help`, a typo that gets
    a "did you mean", shell completion) gets the whole app."""
    from typer.main import get_command_name

    if not args or args[0].startswith("-") or app.registered_callback is None or completing():
        return app  # without the root callback, typer would run a lone command without its name
    name = args[0]
    commands = [c for c in app.registered_commands
                if (c.name or (get_command_name(c.callback.__name__) if c.callback else None)) == name]
    groups = [g for g in app.registered_groups if isinstance(g.name, str) and g.name == name]
    if len(commands) + len(groups) != 1:
        return app
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = commands, groups
    return only


def run_cli(app: typer.Typer, args: list[str] | None = None) -> None:
    """Run the app; never show a traceback (unless PORTRAIT_DEBUG=1); exit with a documented code."""
    ce = _click_exceptions()
    debug = _debug()
    try:
        argv = sys.argv[1:] if args is None else args
        code = named_command_only(app, argv)(args=argv, standalone_mode=False, prog_name="portrait")
    except StudioError as exc:
        if debug:
            raise
        _say(exc.message, exc.hint)
        _exit(exit_code_for(exc))
    except KeyboardInterrupt:
        _err().print("interrupted")
        _exit(130)
    except ce.NoArgsIsHelpError as exc:
        # a bare group: show its help; exit 2 like any usage error (click's convention)
        if exc.ctx is not None:
            typer.echo(exc.ctx.get_help())
        _exit(2)
    except ce.UsageError as exc:
        error, fix = _usage_error(exc)
        _say(error, fix)
        _exit(2)
    except ce.ClickException as exc:
        _say(exc.format_message(), None)
        _exit(exc.exit_code)
    except typer.Exit as exc:
        _exit(exc.exit_code)
    except typer.Abort:
        _say("stopped at a prompt: no answer was given (input ended)",
             "answer the question, or pass the option that answers it (see --help)")
        _exit(2)
    except SystemExit:
        raise
    except OSError as exc:
        if debug:
            raise
        error, fix = _os_error(exc)
        _say(error, fix)
        _exit(2)
    except Exception as exc:
        if debug:
            raise
        _say(f"unexpected {type(exc).__name__}: {exc}".strip(), f"run with {DEBUG_ENV}=1 for details, and please report it")
        _exit(70)
    if isinstance(code, int) and code:
        _exit(code)
    sys.stdout.flush()
