"""Argument types the commands share: argparse refuses a value out of range with one line
naming the argument (a usage line, then `error: argument --limit: ...`), before any store
is opened."""

from __future__ import annotations

import argparse


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def count(text: str) -> int:
    """--limit and the like: a whole number of rows, at least 1 (-1 became SQL's LIMIT -1,
    which lists everything; 0 listed nothing)."""
    n = _whole(text)
    if n is None or n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return n


def row_id(text: str) -> int:
    """A stored row's id: 1 to the largest id a store holds (coldtrace.api.schemas.MAX_ID;
    a larger one overflowed SQLite's integer, a traceback)."""
    from coldtrace.api.schemas import MAX_ID

    n = _whole(text)
    if n is None or not 1 <= n <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text!r}: give an id from 1 to {MAX_ID}")
    return n
