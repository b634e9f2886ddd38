"""The deadline index against a plain dict of due times: same next due, same keys popped, same order."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from segmenter.clock import DeadlineIndex

KEYS = st.sampled_from(["a", "b", "c"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), KEYS, st.one_of(st.none(), st.integers(0, 20))),
        st.tuples(st.just("discard"), KEYS, st.none()),
        st.tuples(st.just("pop"), st.none(), st.integers(0, 20)),
    ),
    max_size=200,
)


@settings(max_examples=500, deadline=None)
@given(OPS)
# a key moved later keeps its earlier entry, which a pop meets below the top: the key must stay scheduled
@example([("schedule", "a", 5), ("schedule", "b", 3), ("schedule", "a", 20), ("pop", None, 10)])
def test_the_index_answers_as_a_dict_of_due_times(ops: list[tuple[str, str | None, int | None]]) -> None:
    index, model = DeadlineIndex(), dict[str, int]()
    for op, key, t in ops:
        if op == "schedule":
            assert key is not None
            index.schedule(key, t)
            if t is None:
                model.pop(key, None)
            else:
                model[key] = t
        elif op == "discard":
            assert key is not None
            index.discard(key)
            model.pop(key, None)
        else:
            assert t is not None
            due = sorted((d, k) for k, d in model.items() if d <= t)
            assert index.pop_due(t) == [k for _, k in due]
            for _, k in due:
                del model[k]
        assert index.next_due() == (min(model.values()) if model else None)
        assert len(index) == len(model) and all(index.due_of(k) == d for k, d in model.items())
