"""Detection is linear in the line's length: 1 MB lines built to make it crawl (hole 9) finish well inside a
generous bound. Before, 1 MB of `1.2.3.4 ` took about 5 minutes (pairwise overlap check) and 100 KB of DE12 and
letters 5 s (a backtracking IBAN pattern); each kind here takes a few seconds on a laptop."""
import time

import pytest

from tamer.protection.detect import ENTITIES, find_pii

from pii_corpus import ADVERSARIAL, adversarial_line

BOUND_S = 30.0


@pytest.mark.parametrize("kind", list(ADVERSARIAL))
def test_one_megabyte_adversarial_line_is_scrubbed_in_bounded_time(kind):
    text = adversarial_line(kind, 1_000_000)
    t0 = time.perf_counter()
    found = find_pii(text, ENTITIES)
    seconds = time.perf_counter() - t0
    assert seconds < BOUND_S, (kind, seconds)
    expected = {"ipv4": 125_000, "emails": 142_857, "phones": 55_555, "fullwidth_digits": 83_333}
    if kind in expected:  # and it still finds every value in them
        assert len(found) == expected[kind]


def test_time_grows_linearly_not_quadratically():
    """Ten times the text takes well under 30 times as long (quadratic would be 100 times)."""
    for kind in ("ipv4", "emails", "digit_groups"):
        small, big = adversarial_line(kind, 50_000), adversarial_line(kind, 500_000)
        t0 = time.perf_counter()
        find_pii(small, ENTITIES)
        t1 = time.perf_counter()
        find_pii(big, ENTITIES)
        t2 = time.perf_counter()
        assert (t2 - t1) < 30 * max(t1 - t0, 0.01), (kind, t1 - t0, t2 - t1)
