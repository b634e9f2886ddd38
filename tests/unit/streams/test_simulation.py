"""Stream equals replay under every schedule the simulation can draw (see ``simulation.py``)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.streams.simulation import GRACE_MS, simulate

SEEDS = int(os.environ.get("SIM_EXAMPLES", "300"))


def _check(seed: int) -> None:
    out = simulate(seed)
    assert not out.missing and not out.extra and not out.conflicting, out.describe()
    # the merge never met an input record after a later one of its partition was applied (every topic is
    # read in order and the producers' reorder, drawn below the grace, is waited out)
    assert not out.sim.overtaken, out.describe()
    # and the reorder it measured stayed within the grace (the producers' reorder here is at most 29 ms)
    assert max(out.sim.reorders, default=0) < GRACE_MS, out.describe()


@settings(max_examples=SEEDS, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_stream_equals_replay_for_any_schedule(seed: int) -> None:
    _check(seed)


def test_one_seed() -> None:
    # SIM_SEED=<n> reproduces a failing seed of the property above (without it: a multi-worker seed)
    _check(int(os.environ.get("SIM_SEED", "21")))


@pytest.mark.parametrize("reorder_ms", [20 * GRACE_MS, 100 * GRACE_MS])
def test_a_reorder_longer_than_the_grace_changes_answers_only_where_it_is_reported(reorder_ms: int) -> None:
    # beyond the grace the merge's one assumption fails and the stream may depart from replay: never silently,
    # and the merge never wedges (seed 48 at 3 s did: a late event held behind a history set a link floor
    # before that history's merge, which waited for the inputs the floor held back). Without crashes: a
    # worker that restarts between vouching for a topic-partition and the late record's arrival has
    # forgotten its word (seed 129 at 600 ms differs unreported with crashes)
    differing = 0
    for seed in range(40, 70):
        out = simulate(seed, reorder_ms=reorder_ms, crash_rate=0.0)
        differs = bool(out.missing or out.extra or out.conflicting)
        assert out.sim.overtaken or not differs, out.describe()
        # the reorder measured (before any record is overtaken) shows it as well: longer than the grace
        assert max(out.sim.reorders, default=0) >= GRACE_MS or not differs, out.describe()
        differing += differs
    assert differing >= 10  # the reorder does change answers here: the check above is not vacuous
