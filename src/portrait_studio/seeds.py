"""The seed policy, in one place for briefs, the CLI, the web studio and the planners.

A seed is an unsigned 32-bit number, 0 to 4,294,967,295: what every FLUX route we call accepts
(BFL, fal and Replicate document an integer; the local provider seeds torch with it) and what
the sandboxes echo back. A larger number would be truncated differently by each provider (or
overflow the ledger's integer column), so it is refused instead.

A shoot explores 1 to 16 random seeds, 3 when not told; 3–5 is the usual range for choosing a
candidate.
"""

from __future__ import annotations

import random

from .errors import UsageError

__all__ = [
    "EXPLORE_DEFAULT", "EXPLORE_MAX", "EXPLORE_MIN", "EXPLORE_RECOMMENDED", "SEED_MAX", "SEED_MIN",
    "check_seed", "check_seed_count", "random_seeds",
]

SEED_MIN = 0
SEED_MAX = 2**32 - 1
EXPLORE_MIN = 1
EXPLORE_MAX = 16
EXPLORE_DEFAULT = 3
EXPLORE_RECOMMENDED = (3, 5)


def check_seed(seed: int, *, field: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_MIN <= seed <= SEED_MAX:
        raise UsageError(f"{seed!r} is not a seed", field=field, hint=f"use a whole number from {SEED_MIN} to {SEED_MAX}")
    return seed


def check_seed_count(count: int, *, field: str = "--seeds") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not EXPLORE_MIN <= count <= EXPLORE_MAX:
        raise UsageError(f"{count!r} seeds", field=field,
                         hint=f"explore {EXPLORE_MIN}–{EXPLORE_MAX} seeds ({EXPLORE_RECOMMENDED[0]}–"
                              f"{EXPLORE_RECOMMENDED[1]} is the usual range)")
    return count


def random_seeds(count: int | None, rng: random.Random | None = None) -> list[int]:
    """`count` fresh seeds (the default count when None); 0 or 17 is refused, never replaced."""
    n = check_seed_count(EXPLORE_DEFAULT if count is None else count)
    rng = rng or random.SystemRandom()
    return [rng.randint(SEED_MIN, SEED_MAX) for _ in range(n)]
