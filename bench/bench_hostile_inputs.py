"""Hostile input, counted: every case ends in a brief/compiled request or a clear StudioError.

Builds a corpus of hostile brief files, shot lists, config and keys files (alias bombs,
cycles, deep nesting, binary, Latin-1, folders, NaN, huge numbers, minors in every field,
pasted keys, garbled YAML...) in a temporary studio, runs each through the library the way
the CLI does (load → compile for briefs), and prints per class:

  cases    how many were tried
  ok       accepted (adult briefs, valid files)
  clear    refused with a StudioError that names the file or field
  crash    any other exception, or a StudioError without a file/field (must be 0)
  hang     took more than --limit seconds (must be 0)
  leak     a pasted key appears in an error message or a compiled prompt (must be 0)

    PYTHONPATH=src python bench/bench_hostile_inputs.py [--seed 1] [--garbled 400] [--limit 2]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.config import read_config, read_keys
from portrait_studio.errors import StudioError
from portrait_studio.prompting import compile_brief
from portrait_studio.series import example_shots_path, load_shots

KEY = "bfl_Zk4m9Qp2Lr7Xw1Nc5Vb8Hs3Jd6Fg0Ty"
MINOR_PHRASES = ["a 12-year-old", "a schoolgirl", "aged 15", "a toddler", "16 yo", "a teenager", "twelve-year-old",
                 "she is 16", "a little boy", "pre-teen", "school uniform", "looks 14"]
ADULT_PHRASES = ["a 30-year-old", "a young woman", "boyfriend jeans", "kid leather gloves", "a school teacher",
                 "her teenage years long behind her", "a woman aged 45", "baby blue silk"]
TEXT_FIELDS = [("subject", "description"), ("styling", "wardrobe"), ("styling", "hair"), ("styling", "makeup"),
               ("background", "description"), ("lighting", "notes"), ("expression", "mood"), (None, "name"),
               ("subject", "anchors"), (None, "avoid"), ("quality", "cues"), ("lens", "camera")]


def _brief_yaml(section: str | None, key: str, text: str) -> str:
    base = "subject:\n  description: a woman in her thirties\n"
    if section is None and key in ("avoid",):
        return base + f"avoid: [{json.dumps(text)}]\n"
    if section is None:
        return base + f"{key}: {json.dumps(text)}\n"
    if section == "subject":
        value = f"[{json.dumps(text)}]" if key == "anchors" else json.dumps(text)
        return f"subject:\n  description: a woman in her thirties\n  {key}: {value}\n".replace(
            "  description: a woman in her thirties\n  description:", "  description:")
    if section == "background":
        return base + f"background: {json.dumps(text)}\n"
    if section == "quality":
        return base + f"quality:\n  cues: [{json.dumps(text)}]\n"
    if section == "hands":
        return base + f"hands:\n  visible: true\n  pose: {json.dumps(text)}\n"
    return base + f"{section}:\n  {key}: {json.dumps(text)}\n"


def _garble(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        i = rng.randint(0, len(chars))
        op = rng.choice(["cut", "insert", "swap"])
        if op == "cut":
            del chars[i: i + rng.randint(1, 40)]
        elif op == "insert":
            chars[i:i] = rng.choices([*":-[]{}&*!|>'\"#%@`\t\n ,?\\", "a", "\x00", "\ufeff"], k=rng.randint(1, 8))
        elif chars:
            j = rng.randrange(len(chars))
            k = i % len(chars)
            chars[k], chars[j] = chars[j], chars[k]
    return "".join(chars)


def brief_cases(root: Path, rng: random.Random, garbled: int) -> Iterator[tuple[str, Path]]:
    def file(name: str, data: str | bytes) -> Path:
        path = root / name
        path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        return path

    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    yield "yaml limits", file("bomb.yaml", "\n".join(levels) + "\nsubject: *h\n")
    yield "yaml limits", file("cycle.yaml", "a: &a [*a]\nsubject: *a\n")
    yield "yaml limits", file("deep.yaml", "subject: " + "[" * 3000 + "]" * 3000 + "\n")
    yield "yaml limits", file("huge.yaml", "subject: {description: a woman}\n" + "#" * 300_000)
    yield "yaml limits", file("many-aliases.yaml", "x: &x a\n" + "".join(f"k{i}: *x\n" for i in range(40)) + "subject: *x\n")
    yield "encoding and files", file("latin1.yaml", "subject:\n  description: café owner\n".encode("latin-1"))
    yield "encoding and files", file("binary.yaml", b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)))
    yield "encoding and files", file("bom.yaml", "\ufeffsubject: {description: a woman}\n")
    yield "encoding and files", file("control.yaml", "subject: \x07\n")
    yield "encoding and files", file("empty.yaml", "")
    folder = root / "folder.yaml"
    folder.mkdir()
    yield "encoding and files", folder
    yield "encoding and files", root / "missing.yaml"
    for value in (".nan", ".inf", "-.inf", "1e400", "9" * 5000, "-1", "0x10", "!!binary aGVsbG8="):
        yield "field values", file(f"value-{abs(hash(value))}.yaml", f"subject: {{description: a woman}}\nlens:\n  f_stop: {value}\n")
    for text in ("subject: {}\n", "subject: []\n", "subject: 42\n", "subject:\n", "[]\n", "42\n", "subject: {age: 17}\n",
                 "subject: {age: 1e3}\n", "subject: {description: a woman}\noutput: {seed: 99999999999999999999}\n",
                 "subject: {description: a woman}\noutput: {aspect_ratio: 3:4}\n",
                 "subject: !!python/object/apply:os.system [true]\n", "? [a]\n: b\nsubject: {description: x}\n"):
        yield "field values", file(f"shape-{abs(hash(text))}.yaml", text)
    for j, (section, key) in enumerate(TEXT_FIELDS):
        for k, phrase in enumerate(MINOR_PHRASES):
            yield "minors", file(f"minor-{j}-{k}.yaml", _brief_yaml(section, key, f"portrait of {phrase}"))
        for k, phrase in enumerate(ADULT_PHRASES):
            yield "adults (must pass)", file(f"adult-{j}-{k}.yaml", _brief_yaml(section, key, f"portrait, {phrase}"))
        yield "keys in briefs", file(f"key-{j}.yaml", _brief_yaml(section, key, f"use {KEY} please"))
    example = example_brief_path("rembrandt-studio-headshot").read_text(encoding="utf-8")
    for i in range(garbled):
        yield "garbled yaml", file(f"garbled-{i}.yaml", _garble(example, rng))


def shots_cases(root: Path, rng: random.Random, garbled: int) -> Iterator[tuple[str, Path]]:
    example = example_shots_path().read_text(encoding="utf-8")
    for i in range(garbled // 2):
        path = root / f"shots-{i}.yaml"
        path.write_text(_garble(example, rng), encoding="utf-8", errors="surrogatepass")
        yield "shot lists", path
    for i, phrase in enumerate(MINOR_PHRASES):
        path = root / f"shots-minor-{i}.yaml"
        path.write_text(f"shots:\n  - wardrobe: navy suit\n  - background: {json.dumps(phrase)}\n")
        yield "shot lists", path


def config_cases(root: Path, rng: random.Random, garbled: int) -> Iterator[tuple[str, Path]]:
    example = 'creator = "Ana"\ndefault_budget_usd = 2.5\n[c2pa]\nalgorithm = "es256"\n'
    for i in range(garbled // 2):
        folder = root / f"cfg-{i}"
        folder.mkdir()
        (folder / "config.toml").write_text(_garble(example, rng), encoding="utf-8", errors="surrogatepass")
        yield "config.toml", folder / "config.toml"
    for i, data in enumerate([b"{", b"[]", b'{"bfl": 1}', b"\xff\xfe", b"", b'{"bfl": "k"}', b"null"]):
        folder = root / f"keys-{i}"
        folder.mkdir()
        (folder / "keys.json").write_bytes(data)
        yield "keys.json", folder / "keys.json"


def run_case(kind: str, path: Path) -> tuple[str, str]:
    """('ok'|'clear'|'crash'|'leak', detail)."""
    try:
        if kind == "shot lists":
            load_shots(path)
        elif kind == "config.toml":
            read_config(path)
        elif kind == "keys.json":
            read_keys(path)
        else:
            brief = load_brief(path)
            request = compile_brief(brief, "flux-1.1-pro", seed=1)
            if KEY in request.prompt or KEY in (request.negative_prompt or ""):
                return "leak", "key in the compiled prompt"
    except StudioError as exc:
        if KEY in str(exc):
            return "leak", str(exc)
        if path.name not in str(exc) and not getattr(exc, "field", None):
            return "crash", f"no file or field named: {exc}"
        return "clear", str(exc)
    except Exception as exc:  # the thing this bench exists to catch
        return "crash", f"{type(exc).__name__}: {exc}"
    return "ok", ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--garbled", type=int, default=400, help="garbled briefs (half as many shot lists and configs)")
    parser.add_argument("--limit", type=float, default=2.0, help="seconds before a case counts as a hang")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts: dict[str, Counter[str]] = {}
    examples: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generators: list[Callable[[Path, random.Random, int], Iterator[tuple[str, Path]]]] = [
            brief_cases, shots_cases, config_cases]
        for gen in generators:
            for kind, path in gen(root, rng, args.garbled):
                started = time.perf_counter()
                outcome, detail = run_case(kind, path)
                if time.perf_counter() - started > args.limit:
                    outcome = "hang"
                if kind == "adults (must pass)" and outcome != "ok":
                    outcome, detail = "crash", f"adult brief refused: {detail}"
                if kind == "minors" and outcome == "ok":
                    outcome, detail = "leak", f"minor brief accepted: {path.read_text()!r}"
                c = counts.setdefault(kind, Counter())
                c["cases"] += 1
                c[outcome] += 1
                if outcome in ("crash", "hang", "leak") and len(examples) < 20:
                    examples.append(f"{kind} {path.name}: {outcome}: {detail[:200]}")
    print(f"{'class':<22}{'cases':>7}{'ok':>6}{'clear':>7}{'crash':>7}{'hang':>6}{'leak':>6}")
    total: Counter[str] = Counter()
    for kind, c in counts.items():
        total.update(c)
        print(f"{kind:<22}{c['cases']:>7}{c['ok']:>6}{c['clear']:>7}{c['crash']:>7}{c['hang']:>6}{c['leak']:>6}")
    print(f"{'total':<22}{total['cases']:>7}{total['ok']:>6}{total['clear']:>7}{total['crash']:>7}{total['hang']:>6}{total['leak']:>6}")
    for line in examples:
        print("  " + line)
    return 1 if total["crash"] or total["hang"] or total["leak"] else 0


if __name__ == "__main__":
    sys.exit(main())
