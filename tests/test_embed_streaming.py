"""The Ray engine streams: at most ``max_in_flight`` chunks are read and not yet committed, in order."""

from __future__ import annotations

import random

import pytest

from skfeaturize.jobs._ray import ordered_results


class _Pool:
    """ray.util.ActorPool's contract: submit(fn, value); get_next() gives results in submission order.
    Tasks finish in a shuffled order, as they do on a cluster."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.pending, self.results = [], {}
        self.submitted = self.next = self.most_in_flight = 0

    def submit(self, fn, value):
        self.pending.append((self.submitted, fn, value))
        self.submitted += 1
        self.most_in_flight = max(self.most_in_flight, self.submitted - self.next)

    def get_next(self):
        while self.next not in self.results:
            k, fn, value = self.pending.pop(self.rng.randrange(len(self.pending)))
            self.results[k] = fn(None, value)
        self.next += 1
        return self.results.pop(self.next - 1)


@pytest.mark.parametrize("bound", [1, 2, 4, 7])
def test_ordered_results_bounds_what_is_read_ahead(bound):
    read = []

    def chunks():
        for k in range(50):
            read.append(k)
            yield k

    seen = []
    pool = _Pool(seed=bound)
    for chunk, result in ordered_results(pool, chunks(), lambda actor, c: c * 10, bound):
        assert result == chunk * 10
        seen.append(chunk)
        assert len(read) - len(seen) <= bound - 1  # read, not yet handed to the writer
    assert seen == list(range(50)) and read == list(range(50))
    assert pool.most_in_flight == bound
