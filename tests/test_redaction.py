"""API keys never reach a prompt, the ledger or run.json: briefs holding one are refused, error
texts are redacted."""

from __future__ import annotations

import pytest

from portrait_studio.brief import load_brief, parse_brief
from portrait_studio.errors import BriefError
from portrait_studio.redaction import REDACTED, find_key, redact, refuse_keys

KEYS = {
    "bfl": "bfl_4f9c2a7d1e0b4c5a9f8e7d6c5b4a3f2e",
    "replicate": "r8_Zq8vXk2m9Lp4Rt7Yw1Ne5Sd3Fg6Hj0Kb",
    "fal": "6f1c2a3b-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef",
}


@pytest.mark.parametrize("provider", KEYS)
def test_a_key_pasted_into_a_brief_is_refused_and_not_echoed(tmp_path, provider: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(f"subject:\n  description: a woman\nstyling:\n  wardrobe: red coat {KEYS[provider]}\n")
    with pytest.raises(BriefError) as err:
        load_brief(path)
    assert err.value.field == "styling.wardrobe" and err.value.line == 4
    assert KEYS[provider] not in str(err.value) and "keys set" in (err.value.hint or "")


def test_ordinary_text_is_not_a_key() -> None:
    for text in ("3:4", "https://api.bfl.ai/v1/flux-pro", "a woman in a red coat", "r8_ is Replicate's prefix",
                 "bfl_host", "f/2.8 at 1/200s", "sha of a file", "portrait_2024_final.png"):
        assert find_key(text) is None, text
    parse_brief({"subject": {"description": "a woman, 3:4 crop"}})


def test_redact_removes_known_keys_and_key_shaped_strings() -> None:
    message = f"401: key {KEYS['bfl']} refused; also tried {KEYS['fal']} and my-own-secret-1234"
    clean = redact(message, ["my-own-secret-1234"])
    assert all(k not in clean for k in KEYS.values()) and "my-own-secret-1234" not in clean
    assert clean.count(REDACTED) == 3 and clean.startswith("401: key ")


def test_redact_leaves_short_stub_keys_alone() -> None:
    assert redact("the word x stays", ["x"]) == "the word x stays"


def test_refuse_keys_names_the_field_for_a_key_of_this_studio() -> None:
    with pytest.raises(BriefError) as err:
        refuse_keys({"instruction": "use my-studio-key-9876 please"}, ["my-studio-key-9876"])
    assert err.value.field == "instruction" and "my-studio-key-9876" not in str(err.value)
