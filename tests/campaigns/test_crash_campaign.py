"""Crash campaign at CI size: every write prefix and every tear point of multi-boot runs in
both stream layouts (see svsmlog/campaign/crash.py for what each figure means)."""

from __future__ import annotations

import pytest

from svsmlog.campaign.crash import crash_campaign
from svsmlog.campaign.run import CI, _crash_runs

RUNS = _crash_runs(CI.crash_seeds[0], full=False)


@pytest.mark.parametrize("index", range(len(RUNS)))
def test_every_crash_point(index: int) -> None:
    run = RUNS[index]()
    fig = crash_campaign(run)
    assert fig.must_be_zero == 0, fig.examples
    assert fig.durable_lost == 0 and fig.false_violations == 0 and fig.next_boot_failures == 0
    assert fig.torn_missed == 0 and fig.ring_order_violations == 0
    # the campaign really covered something: every tear point of every write, both fills
    tears = sum(w.sectors for w in run.writes)
    assert fig.cases == 2 * tears + 1
    assert fig.durable_checked > 0


def test_both_layouts_wraps_and_multi_sector_tears_are_covered() -> None:
    runs = [r() for r in RUNS]
    assert {r.layout.name for r in runs} == {"AGGREGATED", "PER_SERVICE"}
    assert any(r.wrapped for r in runs) and any(not r.wrapped for r in runs)
    assert any(len(r.streams) > 1 for r in runs)
    assert all(len(r.boot_starts) >= 2 for r in runs)
    assert any(max(w.sectors for w in r.writes[r.formatted_at() :]) > 4 for r in runs)
