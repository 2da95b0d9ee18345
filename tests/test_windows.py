"""The one window planner (protein_performer.windows): exhaustive checks over small plans.

Properties of every plan: windows inside the sequence, every position read, consecutive windows
sharing at least ``overlap``, every position owned exactly once by a window that reads it; and
each ownership policy against its definition computed by brute force (nearest centre; earliest
window with a prefix), which is how ``score-variants`` read its windows before the planner.
"""

import itertools

import numpy as np
import pytest

from protein_performer.windows import Window, WindowPlan

LENGTHS = range(0, 41)
SIZES = (1, 2, 3, 4, 5, 7, 8, 16)
TAILS = ("short", "full")
OWNERSHIPS = ("centre", "prefix")


def plans():
    for length, window, tail, ownership in itertools.product(LENGTHS, SIZES, TAILS, OWNERSHIPS):
        for overlap in range(window):
            yield WindowPlan(length, window, overlap, tail, ownership)


def test_windows_lie_inside_and_cover_the_sequence_with_the_overlap_asked():
    for plan in plans():
        windows = list(plan)
        assert len(windows) == len(plan)
        if plan.length == 0:
            assert windows == []
            continue
        starts = np.array([w.start for w in windows])
        stops = np.array([w.stop for w in windows])
        assert starts[0] == 0 and stops[-1] == plan.length, plan
        assert ((0 <= starts) & (starts < stops) & (stops <= plan.length)).all(), plan
        assert (stops - starts <= plan.window).all(), plan
        assert (np.diff(starts) > 0).all() and (np.diff(stops) > 0).all(), plan
        # consecutive windows share at least `overlap` positions and leave no gap
        assert (stops[:-1] - starts[1:] >= plan.overlap).all(), plan
        if plan.tail == "full" or len(windows) == 1:
            assert (stops - starts == min(plan.window, plan.length)).all(), plan
        else:  # only the last one may be short, and the stride is exact
            assert (stops[:-1] - starts[:-1] == plan.window).all() and (np.diff(starts) == plan.stride).all(), plan


def test_every_position_is_owned_exactly_once_by_a_window_that_reads_it():
    for plan in plans():
        owned = np.zeros(plan.length, dtype=int)
        previous_stop = 0
        for w in plan:
            assert w.start <= w.own_start <= w.own_stop <= w.stop, (plan, w)
            assert w.own_start == previous_stop, (plan, w)  # owned ranges are contiguous and in order
            owned[w.own_start : w.own_stop] += 1
            previous_stop = w.own_stop
        assert (owned == 1).all(), plan
        owners = plan.owners()
        assert owners.dtype == np.int64 and len(owners) == plan.length
        for k, w in enumerate(plan):
            assert (np.flatnonzero(owners == k) == np.arange(w.own_start, w.own_stop)).all(), plan


def _reads(plan: WindowPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, n) which window reads which position, and the (W, 1) starts and stops."""
    s = np.array([w.start for w in plan])[:, None]
    e = np.array([w.stop for w in plan])[:, None]
    i = np.arange(plan.length)[None, :]
    return (i >= s) & (i < e), s, e


def test_centre_ownership_is_the_nearest_centre_among_the_windows_that_read_a_position():
    for plan in plans():
        if plan.ownership != "centre" or plan.length == 0:
            continue
        reads, s, e = _reads(plan)
        i = np.arange(plan.length)[None, :]
        distance = np.where(reads, np.abs(i - (s + e - 1) / 2), np.inf)
        np.testing.assert_array_equal(plan.owners(), distance.argmin(axis=0), err_msg=str(plan))  # ties: earlier


def test_prefix_ownership_is_the_earliest_window_that_reads_a_position():
    for plan in plans():
        if plan.ownership != "prefix" or plan.length == 0:
            continue
        reads, s, _ = _reads(plan)
        np.testing.assert_array_equal(plan.owners(), reads.argmax(axis=0), err_msg=str(plan))
        if plan.overlap:  # then every position but the first has context before it in its window
            starts = s[:, 0][plan.owners()]
            assert (starts[1:] < np.arange(1, plan.length)).all(), plan


def _old_variant_windows(n_tokens: int, size: int, causal: bool) -> tuple[list[int], np.ndarray]:
    """How score-variants assigned windows before the planner (stride half a window)."""
    if n_tokens <= size:
        return [0], np.zeros(n_tokens, dtype=np.int64)
    stride = size // 2
    starts = list(range(0, n_tokens - size, stride)) + [n_tokens - size]
    s = np.asarray(starts)[:, None]
    i = np.arange(n_tokens)[None, :]
    inside = (i >= s) & (i < s + size)
    if causal:
        return starts, (inside & ((i > s) | (i == 0))).argmax(axis=0)
    return starts, np.where(inside, np.abs(i - (s + size / 2 - 0.5)), np.inf).argmin(axis=0)


@pytest.mark.parametrize("causal", [False, True])
def test_variant_windows_are_as_before(causal):
    from protein_performer.variants.scoring import assign_windows

    for n, size in itertools.product(range(2, 120), (3, 4, 5, 8, 16, 31, 32)):
        starts, owner = assign_windows(n, size, causal)
        old_starts, old_owner = _old_variant_windows(n, size, causal)
        assert starts == old_starts, (n, size)
        np.testing.assert_array_equal(owner, old_owner, err_msg=f"{n} tokens, windows of {size}")


def test_embed_and_stream_windows_are_as_before():
    from protein_performer.embed.embedder import window_starts

    for length, window in itertools.product(range(1, 90), (1, 2, 5, 16, 30)):
        for overlap in range(window):
            old = [0] if length <= window else [*range(0, length - window, window - overlap), length - window]
            assert window_starts(length, window, overlap) == old, (length, window, overlap)
        stream = [(s, min(s + window, length)) for s in range(0, length, window)]  # score's windows
        assert [(w.start, w.stop) for w in WindowPlan(length, window)] == stream


def test_indexing_is_that_of_a_sequence():
    plan = WindowPlan(100, 30, 10, "full", "centre")
    windows = list(plan)
    assert [plan[k] for k in range(len(plan))] == windows and plan[-1] == windows[-1]
    assert plan[1:3] == windows[1:3]
    assert windows[0] == Window(0, 30, 0, windows[1].own_start) and len(windows[0]) == 30
    with pytest.raises(IndexError):
        plan[len(plan)]
    huge = WindowPlan(10**12, 8192)  # nothing is materialised
    assert len(huge) == -(-10**12 // 8192) and huge[-1].stop == 10**12


@pytest.mark.parametrize("kwargs", [dict(length=-1, window=4), dict(length=5, window=0),
                                    dict(length=5, window=4, overlap=4), dict(length=5, window=4, overlap=-1),
                                    dict(length=5, window=4, tail="long"), dict(length=5, window=4, ownership="last")])
def test_bad_plans_are_refused(kwargs):
    with pytest.raises(ValueError):
        WindowPlan(**kwargs)
