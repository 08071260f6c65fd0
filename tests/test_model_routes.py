"""Mixed comparisons name each model's provider: `-m flux-1-dev@local -m flux-1.1-pro@bfl -m flux-2-pro@fal`."""

from __future__ import annotations

import pytest

from portrait_studio.catalog import ModelRoute, parse_model_ref, parse_model_refs
from portrait_studio.errors import CapabilityError, UsageError


def test_each_model_runs_on_its_own_provider() -> None:
    routes = parse_model_refs(["flux-1-dev@local", "flux-1.1-pro@bfl", "flux-2-pro@fal"])
    assert routes == [ModelRoute("flux-1-dev", "local"), ModelRoute("flux-1.1-pro", "bfl"), ModelRoute("flux-2-pro", "fal")]
    assert str(routes[0]) == "flux-1-dev@local"


def test_a_bare_model_takes_the_global_provider_or_its_default() -> None:
    assert parse_model_ref("flux-2-pro") == ModelRoute("flux-2-pro", "bfl")
    assert parse_model_ref("flux-2-pro", default_provider="fal") == ModelRoute("flux-2-pro", "fal")
    assert parse_model_ref(" flux-2-pro @ replicate ") == ModelRoute("flux-2-pro", "replicate")


def test_the_same_model_on_two_providers_is_a_fair_comparison_but_not_twice_on_one() -> None:
    assert len(parse_model_refs(["flux-1-dev@local", "flux-1-dev@bfl"])) == 2
    with pytest.raises(UsageError, match="listed twice"):
        parse_model_refs(["flux-2-pro@bfl", "flux-2-pro"])


def test_a_route_that_does_not_exist_lists_the_ones_that_do() -> None:
    with pytest.raises(CapabilityError) as err:
        parse_model_ref("flux-1.1-pro@local")
    assert "not served by provider 'local'" in err.value.message
    assert err.value.hint == "its routes: flux-1.1-pro@bfl, flux-1.1-pro@fal, flux-1.1-pro@replicate"


def test_a_misspelt_provider_or_model_is_named_with_a_suggestion() -> None:
    with pytest.raises(CapabilityError) as err:
        parse_model_ref("flux-2-pro@bfll")
    assert "unknown provider 'bfll'" in err.value.message and "did you mean bfl?" in (err.value.hint or "")
    with pytest.raises(CapabilityError, match="unknown model 'flux-2-prro'") as err:
        parse_model_ref("flux-2-prro@bfl")
    assert "flux-2-pro" in (err.value.hint or "")


def test_every_bad_choice_is_reported_at_once() -> None:
    with pytest.raises(CapabilityError) as err:
        parse_model_refs(["flux-1-dev@local", "flux-3@bfl", "flux-1.1-pro@local", "flux-2-pro@nowhere"])
    text = str(err.value)
    assert text.startswith("3 of the --model choices cannot be used")
    assert "unknown model 'flux-3'" in text and "flux-1.1-pro@bfl" in text and "unknown provider 'nowhere'" in text


@pytest.mark.parametrize("bad", ["@bfl", "flux-2-pro@", "flux-2-pro@bfl@fal", ""])
def test_malformed_refs_say_how_to_write_them(bad: str) -> None:
    with pytest.raises(UsageError, match="MODEL@PROVIDER"):
        parse_model_ref(bad)
