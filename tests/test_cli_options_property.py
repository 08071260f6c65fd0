"""Property-based tests over every option and argument parser of every command (found from the app).

Whatever text a user types, a parser either returns a usable value or raises a usage error that
run_cli prints in two lines; it never crashes, never lets nan/inf through, never accepts a seed,
port or count outside the policy.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer._click import Context
from typer._click.exceptions import UsageError

from portrait_studio.cli import app
from portrait_studio.cli._options import TOKEN_MIN, check_finite, check_id, check_token
from portrait_studio.seeds import EXPLORE_MAX, EXPLORE_MIN, SEED_MAX

ROOT = typer.main.get_command(app)


def _commands(cmd: Any = ROOT, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    found = []
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        if hasattr(sub, "commands"):
            found += _commands(sub, (*path, name))
        else:
            found.append((" ".join((*path, name)), sub))
    return found


PARAMS = [(f"{name} {p.name}", cmd, p) for name, cmd in _commands() for p in cmd.params
          if p.name not in ("help", "json_out") and not p.is_eager]

# what users type: numbers of every shape, words, paths, control characters, any unicode
TYPED = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "%", "_", "-1", "0", "2^32", "4294967296", "18446744073709551616", "nan", "inf",
                     "-inf", "1e309", "99999", "auto", "maybe", "..", "/", "\x00", "é", "１２"]),
)


def _process(cmd: Any, param: Any, text: str) -> Any:
    ctx = Context(cmd, info_name=cmd.name)
    value: Any = [text] if (param.multiple or param.nargs == -1) else text
    return param.process_value(ctx, value)


@pytest.mark.parametrize("name,cmd,param", PARAMS, ids=[p[0] for p in PARAMS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TYPED)
def test_every_parser_returns_a_sane_value_or_a_usage_error(name: str, cmd: Any, param: Any, text: str) -> None:
    try:
        value = _process(cmd, param, text)
    except UsageError as exc:
        assert exc.format_message()  # something to print
        return
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, float):
            assert math.isfinite(v), (name, text, v)
        lo, hi = getattr(param, "min", None), getattr(param, "max", None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            assert (lo is None or v >= lo) and (hi is None or v <= hi), (name, text, v)


SEED_PARAMS = [(n, c, p) for n, c, p in PARAMS if p.name == "seed"]
BUDGETS = [(n, c, p) for n, c, p in PARAMS if p.name == "budget"]


@pytest.mark.parametrize("name,cmd,param", SEED_PARAMS, ids=[p[0] for p in SEED_PARAMS])
@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=-(2**70), max_value=2**70))
def test_every_seed_option_accepts_exactly_the_seed_range(name: str, cmd: Any, param: Any, n: int) -> None:
    try:
        assert _process(cmd, param, str(n)) == n and 0 <= n <= SEED_MAX
    except UsageError:
        assert not 0 <= n <= SEED_MAX


@pytest.mark.parametrize("name,cmd,param", BUDGETS, ids=[p[0] for p in BUDGETS])
@settings(max_examples=60, deadline=None)
@given(x=st.floats(allow_nan=True, allow_infinity=True))
def test_every_budget_is_a_finite_amount_of_zero_or_more(name: str, cmd: Any, param: Any, x: float) -> None:
    try:
        assert _process(cmd, param, repr(x)) == x and math.isfinite(x) and x >= 0
    except UsageError:
        assert not (math.isfinite(x) and x >= 0)


def test_the_option_families_are_all_covered() -> None:
    names = {p.name for _, _, p in PARAMS}
    assert {"seed", "seeds", "budget", "port", "token", "sandbox", "run", "provider"} <= names
    assert len(SEED_PARAMS) >= 6 and len(BUDGETS) >= 6


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=-100, max_value=100))
def test_seeds_counts_follow_the_policy(n: int) -> None:
    seeds = next(p for name, cmd, p in PARAMS if name == "shoot seeds")
    cmd = ROOT.commands["shoot"]
    try:
        assert _process(cmd, seeds, str(n)) == n and EXPLORE_MIN <= n <= EXPLORE_MAX
    except UsageError:
        assert not EXPLORE_MIN <= n <= EXPLORE_MAX


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_a_token_is_url_safe_ascii_and_long_enough(text: str) -> None:
    ok = bool(re.fullmatch(r"[A-Za-z0-9._~-]+", text)) and len(text) >= TOKEN_MIN
    try:
        assert check_token(text) == text and ok
    except typer.BadParameter:
        assert not ok


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=string.printable + "é%_ ", max_size=40))
def test_an_id_has_no_wildcards_and_is_never_empty(text: str) -> None:
    try:
        assert check_id(text) == text
        assert text and "%" not in text and " " not in text and text[0] not in "_-"
    except typer.BadParameter:
        pass


@settings(max_examples=300, deadline=None)
@given(x=st.floats(allow_nan=True, allow_infinity=True), lo=st.floats(-10, 10), hi=st.floats(-10, 10))
def test_check_finite_never_lets_nan_or_infinity_through(x: float, lo: float, hi: float) -> None:
    try:
        v = check_finite(x, low=lo, high=hi)
        assert v is not None and math.isfinite(v) and lo <= v <= hi
    except typer.BadParameter:
        assert not (math.isfinite(x) and lo <= x <= hi)
