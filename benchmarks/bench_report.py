"""The bench's figures, its targets, and the report it prints and writes."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Mapping, Sequence

from benchmarks.tables import count, duration, markdown_table, ms, rate
from benchmarks.wrk import WrkResult

GET_ID = 'GET /addresses/{id}'
PUT = 'PUT /addresses/{id}'
POST = 'POST /addresses'
LIST = 'GET /addresses'
PAGE_SIZE = 100
PAGE = f'GET /addresses?limit={PAGE_SIZE}'
ORDER = (GET_ID, PUT, POST, PAGE, LIST)

# Requests/s as a fraction of the bare floor's, at least; None: none set.
RATIO_TARGETS: dict[str, dict[str, float | None]] = {
    GET_ID: {'memory': 0.85, 'fs': 0.60, 'sqlite': 0.70, 'postgres': 0.45},
    POST: {'memory': 0.70, 'fs': None, 'sqlite': 0.40, 'postgres': 0.30},
    PUT: {'memory': 0.70, 'fs': None, 'sqlite': 0.40, 'postgres': 0.30},
}
# Time per listed entry of `GET /addresses` at the listing size, at most.
PER_ENTRY_TARGETS_US = {'memory': 20, 'fs': 60, 'sqlite': 20,
                        'postgres': 30}
# `GET /addresses/{id}` at the large size is slower by this factor at most.
SCALING_TARGET = 1.2
RSS_PER_ENTRY_TARGET = 2048


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each run lasts, and the store sizes: most figures are
    taken at `small`, full listings also at `listing`, and `GET by id`
    again at `large`. The whole bench should take `budget_s` at most."""

    name: str
    #: a run lasts this long, or long enough for each connection to get
    #: `min_replies` replies
    seconds: int
    min_replies: int
    warm_up_s: float
    small: int
    listing: int
    large: int
    budget_s: float


DEFAULT = Plan('default', seconds=5, min_replies=5, warm_up_s=1.0,
               small=1_000, listing=10_000, large=100_000, budget_s=600)
QUICK = Plan('--quick', seconds=1, min_replies=2, warm_up_s=0.3,
             small=1_000, listing=10_000, large=10_000, budget_s=120)


@dataclasses.dataclass(frozen=True)
class Figure:
    request: str
    stored: int
    result: WrkResult
    floor_rps: float
    #: entries in each response, for listings
    returned: int = 0

    @property
    def ratio(self) -> float:
        return self.result.rps / self.floor_rps if self.floor_rps \
            else math.nan

    @property
    def per_entry_s(self) -> float | None:
        """Server time per listed entry."""
        if not self.returned or not self.result.rps:
            return None
        return 1 / (self.result.rps * self.returned)


@dataclasses.dataclass
class EngineRun:
    engine: str
    floor: WrkResult
    figures: list[Figure] = dataclasses.field(default_factory=list)
    #: the server's RSS in bytes by entries stored
    rss: dict[int, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    target: str = ''
    met: bool | None = None

    @property
    def mark(self) -> str:
        return {True: 'yes', False: '**no**', None: ''}[self.met]


def judge(engine: str, figure: Figure, sizes: Plan) -> Verdict:
    """The figure's target, and whether it is met."""
    if figure.request in RATIO_TARGETS and \
            (figure.request != GET_ID or figure.stored == sizes.small):
        least = RATIO_TARGETS[figure.request].get(engine)
        if least is None:
            return Verdict('report only')
        return Verdict(f'≥ {least:.2f}', figure.ratio >= least)
    per_entry = figure.per_entry_s
    if figure.request == LIST and figure.stored == sizes.listing \
            and per_entry is not None:
        most = PER_ENTRY_TARGETS_US[engine]
        return Verdict(f'≤ {most} µs/entry', per_entry * 1e6 <= most)
    return Verdict()


def slowdown(run: EngineRun) -> tuple[Figure, Figure, float] | None:
    """`GET /addresses/{id}` with the fewest and the most entries, and how
    many times slower the second is."""
    gets = sorted((f for f in run.figures if f.request == GET_ID),
                  key=lambda f: f.stored)
    if len(gets) < 2 or not gets[-1].result.rps:
        return None
    return gets[0], gets[-1], gets[0].result.rps / gets[-1].result.rps


def rss_per_entry(rss: Mapping[int, int]) -> tuple[int, int, float] | None:
    """From the two largest sizes measured: those sizes and the bytes of
    RSS each entry added between them."""
    sizes = sorted(rss)
    if len(sizes) < 2:
        return None
    low, high = sizes[-2], sizes[-1]
    return low, high, (rss[high] - rss[low]) / (high - low)


def figure_row(engine: str, figure: Figure, sizes: Plan) -> list[str]:
    verdict = judge(engine, figure, sizes)
    per_entry = figure.per_entry_s
    return [engine, figure.request, count(figure.stored),
            *result_cells(figure.result), f'{figure.ratio:.2f}',
            '' if per_entry is None else f'{per_entry * 1e6:.1f}',
            count(figure.result.errors), verdict.target, verdict.mark]


def result_cells(result: WrkResult) -> list[str]:
    return [rate(result.rps), ms(result.p50_s), ms(result.p99_s)]


def floor_row(run: EngineRun) -> list[str]:
    return [run.engine, 'bare Tornado: GET /addresses/{id}', '',
            *result_cells(run.floor), '1.00', '', count(run.floor.errors),
            '', '']


def requests_table(runs: Sequence[EngineRun], sizes: Plan) -> str:
    rows = []
    for run in runs:
        rows.append(floor_row(run))
        ordered = sorted(run.figures, key=lambda f: (
            ORDER.index(f.request), f.stored))
        rows += [figure_row(run.engine, f, sizes) for f in ordered]
    header = ['engine', 'request', 'stored:', 'req/s:', 'p50 ms:',
              'p99 ms:', '× bare:', 'µs/entry:', 'errors:', 'target',
              'met']
    return markdown_table(header, rows)


def scaling_rows(run: EngineRun) -> list[list[str]]:
    rows = []
    found = slowdown(run)
    if found is not None:
        low, high, factor = found
        rows.append([run.engine, f'{GET_ID}: req/s at {count(low.stored)} '
                     f'over req/s at {count(high.stored)} stored',
                     f'{factor:.2f}', f'≤ {SCALING_TARGET:.2f}',
                     Verdict('', factor <= SCALING_TARGET).mark])
    per_entry = rss_per_entry(run.rss) if run.engine == 'memory' else None
    if per_entry is not None:
        low_n, high_n, size = per_entry
        rows.append([run.engine, f'RSS per stored entry, {count(low_n)} to '
                     f'{count(high_n)} stored', f'{size:,.0f} B',
                     f'≤ {RSS_PER_ENTRY_TARGET:,} B',
                     Verdict('', size <= RSS_PER_ENTRY_TARGET).mark])
    return rows


def scaling_table(runs: Sequence[EngineRun]) -> str:
    rows = [row for run in runs for row in scaling_rows(run)]
    return markdown_table(['engine', 'figure', 'value', 'target', 'met'],
                          rows)


def time_table(runs: Sequence[EngineRun]) -> str:
    rows = [[run.engine, duration(run.load_seconds), duration(run.seconds)]
            for run in runs]
    return markdown_table(['engine', 'filling the store:', 'in all:'], rows)


def render(plan: Plan, runs: Sequence[EngineRun],
           skipped: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """The whole report, in markdown."""
    parts = [
        '# Benchmark results',
        preamble(plan, context),
        '## Requests',
        requests_table(runs, plan),
        '## Scaling',
        scaling_table(runs),
        '## Time taken',
        time_table(runs),
        *notes(runs, skipped),
    ]
    return '\n\n'.join(parts) + '\n'


def preamble(plan: Plan, context: Mapping[str, Any]) -> str:
    started = time.strftime('%Y-%m-%d %H:%M UTC',
                            time.gmtime(context['started']))
    elapsed = context['elapsed']
    lines = [
        f'`./run.py bench` ({plan.name} plan), run on {started}; it took '
        f'{duration(elapsed)} (budget {duration(plan.budget_s)}).',
        '',
        f"- Machine: {context['machine']}; load average "
        f"{context['load_before']:.2f} before, "
        f"{context['load_after']:.2f} after.",
        f"- Versions: {context['versions']}.",
        f'- wrk: 1 thread, 16 connections (1 for full listings), '
        f'{plan.warm_up_s:g} s of warm-up, then {plan.seconds} s per run '
        f'or the time for {plan.min_replies} replies per connection. '
        'Each server is one process, logging to a file on every request.',
        '- Stores hold copies of the reference entries (data/addresses): '
        'the memory engine is filled by POSTs, the others through the '
        "engine's Python API while their server is stopped.",
        '- `× bare` is requests/s over those of `benchmarks/bare.py`, '
        'bare Tornado serving the same entry\'s JSON: the better of its '
        'runs just before and just after the engine. `µs/entry` is server '
        'time per listed entry: 1 / (requests/s × entries per response).',
    ]
    return '\n'.join(lines)


def notes(runs: Sequence[EngineRun],
          skipped: Mapping[str, str]) -> list[str]:
    lines = [f'- {engine}: not measured, {reason}.'
             for engine, reason in skipped.items()]
    lines += [f'- {run.engine}: {note}.' for run in runs
              for note in run.notes]
    return ['## Notes', '\n'.join(lines)] if lines else []
