"""The order in which arms are timed: rotation, balance, visits, and when engines fit together."""

from __future__ import annotations

import collections
import itertools

import pytest

from vit_backend_plugin.harness.speed_order import fits_together, round_order, visit_order


def test_two_arms_alternate_a_b_b_a():
    seq = "".join(name for _, name in round_order(["A", "B"], 4))
    assert seq == "ABBABAAB"


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_every_arm_takes_every_place_equally_often_over_2n_rounds(n):
    names = [chr(65 + i) for i in range(n)]
    order = round_order(names, 2 * n)
    places = collections.Counter()
    for _, group in itertools.groupby(order, key=lambda x: x[0]):
        group = [name for _, name in group]
        assert sorted(group) == names  # each round times every arm once
        for place, name in enumerate(group):
            places[(name, place)] += 1
    assert set(places.values()) == {2}


def test_rounds_are_numbered_in_order_and_complete():
    order = round_order(["A", "B", "C"], 5)
    assert [r for r, _ in order] == sorted(r for r, _ in order)
    assert collections.Counter(name for _, name in order) == {"A": 5, "B": 5, "C": 5}


def test_visits_split_the_rounds_into_blocks_and_rotate():
    v = visit_order(["A", "B"], 10, 2)
    assert v == [("A", [0, 1, 2, 3, 4]), ("B", [0, 1, 2, 3, 4]),
                 ("B", [5, 6, 7, 8, 9]), ("A", [5, 6, 7, 8, 9])]
    # more visits than rounds: one round per visit
    v = visit_order(["A", "B"], 2, 5)
    assert [rounds for _, rounds in v] == [[0], [0], [1], [1]]
    for names, rounds, visits in [(["A", "B", "C"], 7, 3), (["A"], 3, 2)]:
        got = collections.defaultdict(list)
        for name, block in visit_order(names, rounds, visits):
            got[name] += block
        assert all(sorted(b) == list(range(rounds)) for b in got.values())


def test_engines_fit_together_by_their_memory_reservations():
    assert fits_together(False, [None, None, None])  # CPU: host memory per engine
    assert not fits_together(True, [None, None])  # vLLM's default 0.9 each
    assert fits_together(True, [0.3, 0.3, 0.3])
    assert not fits_together(True, [0.5, 0.5])
