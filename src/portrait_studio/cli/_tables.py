"""Tables that read at 80 columns (Rich's width when output is piped) and never cut an id.

Ids (runs, images) are what the user types next, so their column never wraps or shrinks;
the columns that may give way fold their text onto more lines instead of ending in '…'.
Paths go on their own line under the table, where they can be as long as they are.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

__all__ = ["FOLD", "ID", "new_table"]

ID: dict[str, Any] = {"no_wrap": True, "overflow": "ignore"}
"""An id column: never wrapped, never shortened."""
FOLD: dict[str, Any] = {"overflow": "fold"}
"""A column that folds long values onto more lines rather than cutting them."""


def new_table(*columns: tuple[str, dict[str, Any]], title: str | None = None, spaced: bool = False) -> Table:
    """A compact table: no vertical rules (each saves a column of width), title on the left.

    `spaced` leaves a blank line after each row, for rows of several lines.
    """
    table = Table(box=box.SIMPLE_HEAD, title=Text(title, style="bold") if title else None, title_justify="left",
                  pad_edge=False, expand=False, show_edge=False, show_lines=spaced)
    for name, options in columns:
        table.add_column(name, **{"overflow": "fold", **options})
    return table
