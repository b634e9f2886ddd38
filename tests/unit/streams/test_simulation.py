"""Stream equals replay under every schedule the simulation can draw (see ``simulation.py``)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.streams.simulation import simulate

SEEDS = int(os.environ.get("SIM_EXAMPLES", "300"))


def _check(seed: int) -> None:
    out = simulate(seed)
    assert not out.missing and not out.extra and not out.conflicting, out.describe()


@settings(max_examples=SEEDS, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_stream_equals_replay_for_any_schedule(seed: int) -> None:
    _check(seed)


@pytest.mark.skipif("SIM_SEED" not in os.environ, reason="reproduces one seed: SIM_SEED=<n>")
def test_one_seed() -> None:
    _check(int(os.environ["SIM_SEED"]))
