"""CSV the server writes, safe to open in a spreadsheet: no cell can become a live formula (CSV injection).

OWASP's rule (owasp.org/www-community/attacks/CSV_Injection): a cell that begins with `=`, `+`, `-`, `@`, a tab or
a carriage return is read as a formula by Excel, LibreOffice and Google Sheets, so such a text cell gets a single
quote in front, which the spreadsheet shows as text. Only the first character counts, as OWASP says: a cell that
begins with a space is text to a spreadsheet. A cell that already begins with quotes before one of those characters
gets one more, so `original_cell` undoes `safe_cell` exactly and an export reads back as what was stored. Python's
csv module quotes any cell holding the separator, a double quote or a line break, so no text can start a new cell
after its own separator (OWASP's second point).

Numbers (int, float) are written as they are: a negative longitude `-73.9` is data the server computed, not text a
caller chose, and a number cannot carry a formula; only strings are neutralised.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

_FORMULA = re.compile(r"^'*[=+\-@\t\r]")  # a formula start, after any quotes a previous neutralising added


def safe_cell(value: object) -> object:
    """A text cell that a spreadsheet would read as a formula, with a `'` in front; any other value as it is."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def original_cell(text: str) -> str:
    """What `safe_cell` was given, from what it wrote (an import reads back an export)."""
    return text[1:] if text.startswith("'") and _FORMULA.match(text[1:]) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A whole CSV (header, then rows) with every cell through `safe_cell`; None is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue()
