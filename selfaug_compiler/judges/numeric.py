"""Final-number judge (GSM8K style): the number after ``####`` if present, else the last number."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_MARKER = "####"


def normalize_number(raw: str) -> str | None:
    """'$1,234.50' -> '1234.5', '3.0' -> '3', '-0' -> '0'; None when it is not a number."""
    cleaned = raw.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text)
    for raw in reversed(matches):
        value = normalize_number(raw)
        if value is not None:
            return value
    return None


def extract_final_number(text: str | None) -> str | None:
    """The final answer of a worked solution, normalized; None when the text has no number."""
    if not text:
        return None
    if _MARKER in text:
        after = text.rsplit(_MARKER, 1)[1]
        found = _NUMBER.search(after)
        if found:
            return normalize_number(found.group(0))
    return _last_number(text)


def numbers_match(a: str | None, b: str | None) -> bool:
    """True when both texts (or bare numbers) have the same final number."""
    x, y = extract_final_number(a), extract_final_number(b)
    return x is not None and x == y
