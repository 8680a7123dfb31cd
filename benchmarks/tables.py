"""Figures as text: percentiles, units and markdown tables."""

from __future__ import annotations

import math
from typing import Sequence


def percentile(ordered: Sequence[float], q: float) -> float:
    """The `q`-th percentile (nearest rank) of values sorted ascending;
    NaN for none."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def markdown_table(header: Sequence[str],
                   rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; numbers are best right-aligned,
    so a header ending in ':' right-aligns its column."""
    names = [h.rstrip(':') for h in header]
    rules = ['--:' if h.endswith(':') else '---' for h in header]
    lines = [names, rules, *rows]
    return '\n'.join('| ' + ' | '.join(cells) + ' |' for cells in lines)


def count(n: int) -> str:
    return f'{n:,}'


def rate(per_s: float) -> str:
    """Requests/s: whole numbers, but tenths below 10."""
    return f'{per_s:.1f}' if per_s < 10 else f'{per_s:,.0f}'


def ms(seconds: float) -> str:
    """Seconds as milliseconds with 3 significant digits or more."""
    if math.isnan(seconds):
        return '-'
    value = seconds * 1000
    if value < 10:
        return f'{value:.2f}'
    return f'{value:.1f}' if value < 100 else f'{value:,.0f}'


def mib(n_bytes: int) -> str:
    return f'{n_bytes / 2 ** 20:.1f} MiB'


def duration(seconds: float) -> str:
    """`75.4` as `1 min 15 s`."""
    minutes, rest = divmod(round(seconds), 60)
    return f'{minutes} min {rest} s' if minutes else f'{rest} s'
