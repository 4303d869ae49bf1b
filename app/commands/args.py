"""argparse types that check a number against its range in :mod:`app.core.limits`.

``--ctx 4294971392`` must not reach llama.cpp, where a C ``uint32_t`` would make it 4096; argparse
turns the ``ArgumentTypeError`` these raise into one line and exit code 2 ("argument --ctx: ...").
The window reads the same ranges, so both refuse the same values.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from app.core.errors import RigfitError
from app.core.limits import Range


def int_in(rng: Range) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number within ``rng``."""

    def parse(text: str) -> int:
        try:
            return rng.parse_int(text)
        except RigfitError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def float_in(rng: Range) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number within ``rng``."""

    def parse(text: str) -> float:
        try:
            return rng.parse_float(text)
        except RigfitError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "number"
    return parse
