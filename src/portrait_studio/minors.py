"""Does a text describe a minor? Portraits of minors are refused before anything is sent.

The numeric `subject.age` was the only check, so "a 12-year-old schoolgirl in uniform" in a
description was compiled, sent and charged. `find_minor` reads free text the way a prompt
model would: ages under 18 in digits or words ("12 yo", "age 12", "twelve-year-old", "she
is 16"), and words for children and teenagers (child, kid, teen, schoolgirl, toddler, ...).

It is tuned against false alarms on adults: "a 30-year-old", "girlfriend", "boyfriend jeans",
"kid leather gloves", "school teacher", "young woman", "her teenage years long behind her",
"a 10-year-old leather jacket". `girl` and `boy` alone are refused unless the same text (or
the brief's `age`) states an adult age, because prompts use them for adults and children
alike. English only; the structured `age` field covers the rest.

Pure functions, no I/O: the brief validator, the engine and the edit/restyle instruction
path all call `find_minor` / `refuse_minor`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

from .errors import BriefError

__all__ = ["MINOR_HINT", "find_minor", "minor_hint", "refuse_minor", "refuse_minor_fields"]

MINOR_HINT = "portraits of minors are not supported: describe an adult (18 or older), e.g. 'a woman in her twenties'"

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}

_UNIT_RE = "|".join(sorted(_UNITS, key=len, reverse=True))
_TENS_RE = "|".join(_TENS)
# a number in digits or words: "12", "twelve", "thirty-five", "thirty five"
_NUM = rf"(?:\d{{1,3}}(?![.,]\d)|(?:(?:{_TENS_RE})(?:[\s-](?:{_UNIT_RE}))?)|(?:{_UNIT_RE}))"

_YEARS_OLD = re.compile(
    rf"\b(?P<n>{_NUM})(?:\s*-?\s*(?:years?|yrs?)\s*-?\s*(?:old|of\s+age)|\s*-?\s*(?:yo|y/o|y\.o\.?))(?![a-z])",
    re.IGNORECASE,
)
_AGE_WORD = re.compile(
    rf"\b(?:aged?|age\s+of|age:|ages)\s*(?:only\s+|just\s+|about\s+|around\s+|barely\s+)?(?P<n>{_NUM})\b",
    re.IGNORECASE,
)
# "she is 16", "who's 15": a bare number after a person and a verb, ending the clause
_CLAUSE_END = r"(?=\s*(?:$|[,.;!?)]|\s(?:and|or|but|with|in|wearing|tops|at\s+most)\b))"
_IS_AGE = re.compile(
    rf"\b(?:she|he|they|who|subject|model|person|girl|boy|woman|man|kid)(?:\s+(?:is|was|looks|seems)|'s|’s)"
    rf"\s+(?:only\s+|just\s+|barely\s+|about\s+|around\s+|like\s+)?(?P<n>{_NUM})\b{_CLAUSE_END}",
    re.IGNORECASE,
)
_LOOKS_AGE = re.compile(
    rf"\b(?:look(?:s|ing)?|appear(?:s|ing)?)\s+(?:like\s+)?(?:about\s+|around\s+|only\s+|maybe\s+)?"
    rf"(?:(?:she|he)'s\s+)?(?P<n>{_NUM})\b{_CLAUSE_END}",
    re.IGNORECASE,
)
# "a 10-year-old leather jacket": an age that belongs to a thing, not a person
_THING_AFTER_AGE = re.compile(
    r"\s*(?:leather|jacket|coat|dress|suit|car|camera|lens|house|building|barn|bottle|wine|whisky|whiskey|scotch|"
    r"bourbon|rum|port|cognac|tree|oak|dog|cat|horse|guitar|piano|violin|sweater|boots|shoes|bag|watch|"
    r"photo|photograph|print|film|rug|sofa|chair|table|book|vintage|heirloom)\b",
    re.IGNORECASE,
)

# Always refused (whole words; the exceptions below are removed first).
_HARD = re.compile(
    r"\b(?:child|children|childlike|child-like|kids?|kiddos?|toddlers?|infants?|newborns?|bab(?:y|ies)|"
    r"teens?|teenagers?|teenaged?|pre-?teens?|tweens?|adolescents?|pre-?pubescent|pubescent|juveniles?|"
    r"youngsters?|underage|under-age|under\s+age|minors|schoolgirls?|schoolboys?|school-?girls?|school-?boys?|"
    r"schoolchild(?:ren)?|schoolkids?|school\s+uniforms?|school-age[d]?|kindergart(?:e|n)ers?|"
    r"(?:elementary|primary|middle|grade|junior\s+high|high)[\s-]school(?:ers?|\s+(?:student|pupil|girl|boy|kid)s?)|"
    r"(?:is|still|currently)\s+in\s+(?:elementary|primary|middle|grade|junior\s+high|high)[\s-]school|"
    r"(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth)"
    r"[\s-]graders?|little\s+(?:girl|boy)s?|lolita|loli|shota|jailbait|barely\s+legal|"
    r"(?:a|the|as\s+a)\s+minor(?=\s*(?:$|[,.;:!?)]|\s(?:in|wearing|with|who|and|at|on|posing)\b)))\b",
    re.IGNORECASE,
)
# Refused unless an adult age is stated: prompts use these for adults and children alike.
_SOFT = re.compile(r"\b(?:girls?|boys?|lads?|lasses?)\b", re.IGNORECASE)
# A negative prompt that pushes away from adulthood asks for a child.
_ADULT_NEGATED = re.compile(
    r"\b(?:adults?|grown[\s-]?ups?|of\s+age|over\s+(?:18|eighteen)|18\s*\+|mature\s+(?:body|figure|face|woman|man))\b",
    re.IGNORECASE,
)

# Phrases that contain a listed word but do not describe a minor: removed before matching.
_EXCEPTIONS = re.compile(
    r"\bkid(?:[\s-]?(?:leather|gloves?|glove|skin|suede|mohair)|ding)\b|"
    r"\bbaby(?:[\s-]?(?:blue|pink|breath|'s[\s-]breath|hairs?|oil|powder|doll|bump|faced?|grand|shower))\b|"
    r"\b(?:teen(?:age)?|child(?:hood)?)\s+years\s+(?:are\s+|were\s+|long\s+|well\s+|far\s+|now\s+)*(?:behind|ago|past|over|gone)\b|"
    r"\b(?:since|after|out\s+of|past|beyond|long\s+past)\s+(?:her|his|their|my|your|one's)\s+(?:teens|teenage\s+years|childhood)\b|"
    r"\b(?:as|when\s+(?:she|he|they|i|you)\s+(?:was|were))\s+an?\s+(?:child|kid|teen|teenager|girl|boy|baby)\b|"
    r"\bformer\s+(?:child|teen)\b|\bchildhood\b|"
    r"\b(?:cover|it|bond|pin-?up|show|poster|bad)[\s-](?:girl|boy)s?\b|\bboy[\s-](?:cut|shorts|band)s?\b|"
    r"\bgirl[\s-](?:power|boss)\b|\bgirls'?\s+night(?:\s+out)?\b|"
    r"\b(?:since|from)\s+(?:the\s+)?age\s+(?:of\s+)?\w+(?:[\s-]\w+)?\b|"
    r"\bchildren's\s+(?:book|hospital|charity|theatre|theater|author|illustrator)s?\b|\b(?:mother|father|parent)\s+of\s+(?:a\s+|the\s+)?(?:teen|teenager|child|baby|kid)s?\b",
    re.IGNORECASE,
)


_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")
_DASHES.update(dict.fromkeys(map(ord, "\u2018\u2019\u02bc\uff07"), "'"))


# Cheap first pass: a text without a digit and without any of these stems cannot match below.
_TRIGGERS = re.compile(
    r"\d|\b(?:" + "|".join(sorted({*_UNITS, *_TENS}, key=len, reverse=True)) + r")\b|"
    r"child|kid|tod|infan|newb|bab|teen|tween|adolesc|pubesc|juven|youngst|age|minor|school|grade|"
    r"loli|shota|jail|legal|girl|boy|lad|lass|adult|grown|mature|kindergart|\by(?:o|/o|\.o)",
    re.IGNORECASE,
)


def _normalise(text: str) -> str:
    """Fold the tricks that hide a word from a regex but not from a prompt model: full-width
    letters, typographic dashes and apostrophes, zero-width and other invisible characters."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text).translate(_DASHES)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def _number(text: str) -> int | None:
    text = text.lower().strip()
    if text.isdigit():
        return int(text)
    parts = re.split(r"[\s-]+", text)
    total = 0
    for part in parts:
        if part in _TENS:
            total += _TENS[part]
        elif part in _UNITS:
            total += _UNITS[part]
        else:
            return None
    return total


def _ages(text: str) -> Iterable[tuple[int, str]]:
    """Every (age, phrase) stated for a person in `text`."""
    for pattern in (_YEARS_OLD, _AGE_WORD, _IS_AGE, _LOOKS_AGE):
        for m in pattern.finditer(text):
            n = _number(m.group("n"))
            if n is None:
                continue
            if pattern is _YEARS_OLD and _THING_AFTER_AGE.match(text, m.end()):
                continue
            yield n, m.group(0).strip()


@lru_cache(maxsize=4096)  # pure; briefs repeat the same preset cues and avoid lists
def find_minor(text: str, *, negative: bool = False, adult_age_stated: bool = False) -> str | None:
    """The phrase in `text` that describes a minor, or None.

    `negative`: the text says what to avoid (a negative prompt): asking to avoid adults
    ("adult, grown-up") is then what gives a child away. `adult_age_stated`: the brief gives
    an adult `age`, so `girl`/`boy` read as casual words for an adult.
    """
    if not text or not text.strip():
        return None
    text = _normalise(text)
    if not _TRIGGERS.search(text):
        return None
    cleaned = _EXCEPTIONS.sub(" ", text)
    ages = list(_ages(cleaned))
    for age, phrase in ages:
        if age < 18:
            return phrase
    hard = _HARD.search(cleaned)
    if hard:
        return hard.group(0)
    if negative:
        negated = _ADULT_NEGATED.search(cleaned)
        if negated:
            return f"avoid '{negated.group(0)}'"
    soft = _SOFT.search(cleaned)
    if soft and not (adult_age_stated or any(age >= 18 for age, _ in ages)):
        return soft.group(0)
    return None


def refuse_minor(
    text: str,
    *,
    field: str,
    negative: bool = False,
    adult_age_stated: bool = False,
    source: str | None = None,
    line: int | None = None,
) -> None:
    """Raise BriefError naming `field` if `text` describes a minor (call before anything is sent)."""
    phrase = find_minor(text, negative=negative, adult_age_stated=adult_age_stated)
    if phrase is not None:
        raise BriefError(
            f"describes a minor ('{phrase}'); portraits of minors are refused",
            field=field, file=source, line=line, hint=minor_hint(phrase),
        )


def refuse_minor_fields(fields: Mapping[str, str], *, negative_fields: Iterable[str] = (), source: str | None = None) -> None:
    """`refuse_minor` over several named texts (an edit's instruction, a shot list's free text ...)."""
    negatives = set(negative_fields)
    for name, text in fields.items():
        refuse_minor(text, field=name, negative=name in negatives, source=source)


def minor_hint(phrase: str) -> str:
    """How to fix a brief in which `phrase` was found."""
    if _SOFT.fullmatch(phrase):
        return "write 'woman' or 'man' (or state an adult age, e.g. 'a 25-year-old'); " + MINOR_HINT
    return MINOR_HINT
