"""The split of a batch of texts into forward passes (`length_groups`) is the cheapest one, against brute force over
every split of the length-sorted inputs, and every input lands in exactly one group."""
import itertools

from hypothesis import given, settings, strategies as st

from tamer.serving.predictor import length_groups


def _cost(groups, lengths, overhead):
    return sum(overhead + len(g) * max(lengths[i] for i in g) for g in groups)


def _brute_force(lengths, overhead):
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(order) - 1):
        groups, start = [], 0
        for k, cut in enumerate(cuts, 1):
            if cut:
                groups.append(order[start:k])
                start = k
        groups.append(order[start:])
        best = min(best, _cost(groups, lengths, overhead))
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=10), st.sampled_from([0, 1, 7.5, 40, 1000]))
def test_length_groups_is_the_cheapest_split(lengths, overhead):
    groups = length_groups(lengths, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert _cost(groups, lengths, overhead) == _brute_force(lengths, overhead)


def test_extremes_one_pass_without_padding_cost_and_one_per_length_without_overhead():
    lengths = [3, 9, 3, 30, 9]
    assert len(length_groups(lengths, overhead=10_000)) == 1
    assert sorted(sorted(lengths[i] for i in g) for g in length_groups(lengths, overhead=0)) == [[3, 3], [9, 9], [30]]
