"""Numbers in warnings: a value that passed a limit never prints equal to it."""

from __future__ import annotations


def past(value: float, limit: float, kind: str = "f") -> tuple[str, str]:
    """A value and the limit it passed, each with the digits that keep them apart.

    ``kind`` is ``"%"`` for shares (a CV of 0.1004 against 10 % is 10.04 % and 10 %, never
    10 % and 10 %) or ``"f"`` for plain numbers (a drift of 10.4 °C against 10 °C is 10.4).
    """
    shown = f"{limit * 100:g}%" if kind == "%" else f"{limit:g}"
    for digits in range(0, 7):
        text = format(value, f".{digits}{kind}")
        if text != format(limit, f".{digits}{kind}"):
            return text, shown
    return format(value, f".6{kind}"), shown


def percent_past(value: float, limit: float) -> tuple[str, str]:
    """A share and the limit it passed, as percentages kept apart (see ``past``)."""
    return past(value, limit, "%")
