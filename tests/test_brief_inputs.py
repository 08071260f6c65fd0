"""Hostile or broken brief files get a clear BriefError naming the file, line and field —
never a hang, a traceback or a silently wrong brief."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.brief import MAX_YAML_BYTES, load_brief, parse_brief, parse_yaml
from portrait_studio.errors import BriefError

SRC = str(Path(__file__).resolve().parents[1] / "src")

# 382 bytes in the issue; ten levels of nine aliases each expand to 9^9 strings.
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
subject:
  description: a woman
  anchors: [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def write(tmp_path: Path, data: str | bytes, name: str = "brief.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_a_yaml_alias_bomb_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    """It hung `compile` past 60 s; run in a child process so the old behaviour fails, not hangs."""
    path = write(tmp_path, BILLION_LAUGHS)
    code = (
        "import sys, time; from portrait_studio.brief import load_brief; from portrait_studio.errors import BriefError\n"
        "t = time.perf_counter()\n"
        "try:\n    load_brief(sys.argv[1])\nexcept BriefError as e:\n    print(round(time.perf_counter() - t, 3), e)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": SRC})
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, message = done.stdout.split(" ", 1)
    assert float(seconds) < 1.0 and time.monotonic() - started < 30
    assert f"{path}:" in message and "aliases" in message


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "subject:\n  description: &d a woman with grey hair\nstyling:\n  hair: *d\n")
    assert load_brief(path).styling.hair == "a woman with grey hair"


def test_an_alias_cycle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="refers to the node that contains it"):
        load_brief(write(tmp_path, "subject: &s\n  description: a woman\n  anchors: *s\n"))


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="levels deep"):
        load_brief(write(tmp_path, "subject: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, "subject: {description: a woman}\n" + "#" * (MAX_YAML_BYTES + 10) + "\n")
    with pytest.raises(BriefError, match="bytes"):
        load_brief(path)


def test_a_binary_file_is_named_as_such(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64)
    with pytest.raises(BriefError) as err:
        load_brief(write(tmp_path, png, "photo.yaml"))
    assert "binary" in str(err.value) and "photo.yaml" in str(err.value)


def test_a_latin1_file_names_the_line_and_the_fix(tmp_path: Path) -> None:
    data = "subject:\n  description: a café owner\n".encode("latin-1")
    with pytest.raises(BriefError) as err:
        load_brief(write(tmp_path, data))
    assert err.value.line == 2 and "UTF-8" in str(err.value) and "UTF-8" in (err.value.hint or "")


def test_a_utf8_file_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    assert load_brief(write(tmp_path, "\ufeffsubject: {description: a café owner}\n")).subject.description


def test_a_folder_is_not_a_brief(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="is a folder"):
        load_brief(tmp_path)


def test_an_empty_subject_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BriefError) as err:
        load_brief(write(tmp_path, "name: x\nsubject: {}\n"))
    assert err.value.field == "subject" and err.value.line == 2 and "description" in (err.value.hint or "")


def test_an_identity_reference_is_enough_of_a_subject(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "face.png")
    brief = load_brief(write(tmp_path, "subject: {}\nreferences:\n  - path: face.png\n    role: identity\n"))
    assert brief.references[0].role == "identity"


def test_a_subject_may_be_written_as_one_sentence() -> None:
    assert parse_brief({"subject": "a woman in her forties"}).subject.description == "a woman in her forties"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(BriefError) as err:
        load_brief(write(tmp_path, f"subject: {{description: a woman}}\nlens:\n  f_stop: {value}\n"))
    assert err.value.field == "lens.f_stop" and err.value.line == 3


@pytest.mark.parametrize(
    "text",
    [
        "subject: !!python/object/apply:os.system ['true']\n",
        "? [a, b]\n: c\nsubject: {description: a woman}\n",
        "subject: {description: a woman}\nname: 2024-13-45\n",
        "subject: {description: a woman}\noutput: {seed: " + "9" * 5000 + "}\n",
        "subject:\n\tdescription: tab\n",
        "subject: {description: a woman}\n---\nsubject: {description: another}\n",
        "subject: \x07\n",
    ],
)
def test_malformed_yaml_is_a_brief_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(BriefError, match=r"brief\.yaml"):
        load_brief(write(tmp_path, text))


def test_parse_yaml_refuses_text_over_the_limit() -> None:
    with pytest.raises(BriefError, match="larger than"):
        parse_yaml("a: b\n" * (MAX_YAML_BYTES // 4), source="pasted")


def test_a_lens_preset_that_is_not_a_name_is_a_brief_error() -> None:
    """Found by the property tests: `lens: {preset: [..]}` crashed in the did-you-mean lookup."""
    with pytest.raises(BriefError) as err:
        parse_brief({"subject": {"description": "a woman"}, "lens": {"preset": ["85mm"]}})
    assert err.value.field == "lens.preset"


@pytest.mark.parametrize("make", ["missing", "folder", "yaml", "bomb"])
def test_a_reference_that_is_not_an_image_names_the_field_and_line(tmp_path: Path, make: str) -> None:
    """A missing or non-image reference was a FileNotFoundError / UnidentifiedImageError traceback."""
    target = tmp_path / "face.png"
    if make == "folder":
        target.mkdir()
    elif make == "yaml":
        target.write_text("subject: {description: a woman}\n")
    elif make == "bomb":
        Image.new("1", (12_000, 12_000)).save(target)
    path = write(tmp_path, "subject: {description: a woman}\nreferences:\n  - role: identity\n    path: face.png\n")
    with pytest.raises(BriefError) as err:
        load_brief(path)
    assert err.value.field == "references.0.path" and err.value.line == 4 and "face.png" in str(err.value)
