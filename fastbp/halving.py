"""Successive halving inside a sweep: what to train at each rung, and which settings go on.

A *setting* is a run's configuration without its seed and its steps: runs of one setting
with different ``steps`` share a trajectory, are promoted together, and each finishes at
its own steps. Rungs are at ``min_steps * eta**k`` below the longest run of the sweep. At
a rung, every setting still in the race whose runs go further is trained to the rung
(each seed once, as the run of ``steps`` = the rung: with no schedule that depends on the
run's length, exactly the start of the longer run), its settings are ranked over their
seeds by :func:`fastbp.ranking.settings` (the report's rule, or the spec's ``metric``),
within each loss function (their losses do not compare), and the best ``max(1, ceil(n /
eta))`` of each go on; the runs of the others stop there. Once no loss function has two
settings left in the race, the rest train in full without further rungs. Decisions are a
pure function of the rung's results, ties broken by ``run_id`` (the ranking's), so a
sweep killed and run again, which finds the rungs' runs saved, makes the same ones.

A run that goes on is trained again from its start to the next rung (the rungs' runs are
ordinary runs, saved in the shards): it ends with exactly the bits of the same run in a
full grid, and no optimizer state has to be kept. That costs the rungs below it again:
with eta = 3, at most half as much again as training the survivors alone.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field

import pandas as pd

from fastbp import ranking
from fastbp.config import RunConfig

_SETTING = operator.attrgetter(*(f for f in RunConfig.field_names() if f not in ("seed", "steps")))


def setting_of(run: RunConfig) -> tuple:
    """A run's setting: every field but its seed and its steps."""
    return _SETTING(run)


def at_rung(run: RunConfig, step: int) -> RunConfig:
    """The run trained to ``step`` at most: the run itself where it is not longer. (A
    copy with fewer steps, not checked again: nothing a valid run's fields must satisfy
    gets harder with fewer steps, but a warm-up shorter than a cosine run, which halving
    refuses. A sweep makes thousands of these at each rung.)"""
    if run.steps <= step:
        return run
    short = copy.copy(run)  # no __init__: the fields as they are, run_id not yet made
    short.__dict__.pop("run_id", None)
    object.__setattr__(short, "steps", step)
    return short


def rungs(min_steps: int, eta: int, longest: int) -> list[int]:
    """The rungs' step counts: min_steps * eta**k below ``longest``."""
    out, step = [], min_steps
    while step < longest:
        out.append(step)
        step *= eta
    return out


@dataclass
class Race:
    """The settings of a sweep's runs, and those still in the race."""

    runs: tuple[RunConfig, ...]
    settings: dict = field(default_factory=dict)  # setting -> its runs, in the spec's order
    active: list = field(default_factory=list)  # settings still in the race, in order

    def __post_init__(self):
        for run in self.runs:
            self.settings.setdefault(setting_of(run), []).append(run)
        self.active = list(self.settings)

    def longest(self, setting) -> int:
        return max(run.steps for run in self.settings[setting])

    def contenders(self, step: int) -> list:
        """The active settings whose runs go further than ``step``."""
        return [s for s in self.active if self.longest(s) > step]

    def rung_runs(self, step: int) -> list[RunConfig]:
        """What the rung at ``step`` trains: each active setting's runs to the rung at
        most (runs sharing a trajectory once)."""
        wanted = {}
        for s in self.active:
            for run in self.settings[s]:
                short = at_rung(run, step)
                wanted.setdefault(short.run_id, short)
        return list(wanted.values())

    def seeds_at(self, setting, step: int) -> list[RunConfig]:
        """A contender's runs at the rung: per seed, its longest run cut at ``step``."""
        longest = {}
        for run in self.settings[setting]:
            if run.steps > longest.get(run.seed, (0, None))[0]:
                longest[run.seed] = (run.steps, run)
        return [at_rung(run, step) for _, run in longest.values()]


def survivors(rows: pd.DataFrame, setting_by_run: dict, eta: int, threshold=None,
              metric=None) -> set:  # fmt: skip
    """The settings that go on from a rung: ``rows``, the runs table of the contenders'
    runs at the rung (one per seed), ``setting_by_run``: run_id -> setting. Within each
    loss function, the best max(1, ceil(n / eta)) of the n settings by
    :func:`fastbp.ranking.settings` (``metric``: the basis to rank by instead of the
    report's rule)."""
    kept = set()
    frame = rows.drop(columns=["steps"])
    for _, group in frame.groupby("loss_fn", sort=True):
        table = ranking.settings(group.reset_index(drop=True), threshold=threshold, how=metric)
        keep = max(1, math.ceil(len(table) / eta))
        kept |= {setting_by_run[run_id] for run_id in table["median_run"].iloc[:keep]}
    return kept


def lacks(rows: pd.DataFrame, metric) -> bool:
    """Whether the runs have no value of the ``metric`` a spec ranks by (held-out data,
    or targets that are classes)."""
    return metric is not None and (metric not in rows or rows[metric].isna().all())
