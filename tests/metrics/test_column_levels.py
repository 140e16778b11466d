"""The per-column level counts of a linear layer kept current from the changed codes equal a brute-force count after
every step, whichever way the changes arrive (offered by the transition count, found by its own comparison, a full
recount after a reset as after a resume, codes changed in place); the blocked change detection equals ``nonzero``;
the spike total is exact past float32's integers; the followed weights are distinct uniform draws."""

import pytest
import torch

import quest_lightning.metrics.transitions as transitions
from quest_lightning.lightning.callbacks.transition_counts import draw_without_replacement
from quest_lightning.metrics import LayerGeometry, level_operation_counts, transition_changes
from quest_lightning.metrics.column_levels import ColumnLevels, column_level_counts
from quest_lightning.nn.neurons.base import spike_total


def _brute_columns(codes, qmax):
    rows, cols = codes.shape
    out = [[0] * cols for _ in range(2 * qmax + 1)]
    for row in codes.tolist():
        for i, c in enumerate(row):
            out[c + qmax][i] += 1
    assert sum(map(sum, out)) == rows * cols
    return out


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_column_level_counts_match_brute_force(bits):
    qmax = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(-qmax, qmax + 1, (7, 11), generator=g, dtype=torch.int8)
    assert column_level_counts(codes, qmax).tolist() == _brute_columns(codes, qmax)


@pytest.mark.parametrize("bits", [2, 3])
def test_the_kept_table_equals_a_recount_after_many_random_steps(bits, monkeypatch):
    monkeypatch.setattr(transitions, "_CHANGE_BLOCK", 64)  # several blocks per comparison
    qmax = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(10 + bits)
    codes = torch.randint(-qmax, qmax + 1, (13, 40), generator=g, dtype=torch.int8)
    counts = torch.randint(0, 9, (40,), generator=g).double()
    table, levels, ways = ColumnLevels(qmax), None, set()
    for step in range(40):
        share = [0.0, 0.02, 0.3, 1.0][step % 4]  # no change, a few, many, every code redrawn
        flip = torch.rand(codes.shape, generator=g) < share
        new = torch.where(flip, torch.randint(-qmax, qmax + 1, codes.shape, generator=g, dtype=torch.int8), codes)
        way = ["offer", "own", "offer-and-past", "reset", "in-place"][step % 5]
        if way.startswith("offer"):
            moved = transition_changes(codes, new, qmax, levels)
            levels = moved.levels
            table.offer(codes, new, moved.index, moved.before, moved.after)
            if way == "offer-and-past":  # a later step offered too (the last step of a stage): must not be applied
                later = new.clone()
                later[0, 0] = qmax if int(later[0, 0]) != qmax else -qmax
                past = transition_changes(new, later, qmax)
                table.offer(new, later, past.index, past.before, past.after)
        elif way == "reset":  # a resumed run starts from nothing
            table.reset()
        elif way == "in-place":  # the held codes changed in place: never trusted as what was counted
            table.counts(codes)
            codes.neg_()
            new = codes.clone() if step % 2 else new
        ways.add(way)
        got = table.counts(new)
        assert got.tolist() == _brute_columns(new, qmax), (step, way)
        ops = level_operation_counts(LayerGeometry("linear", 40, 13), counts, new, qmax, column_levels=got)
        assert torch.equal(ops, level_operation_counts(LayerGeometry("linear", 40, 13), counts, new, qmax))
        assert table.counts(new) is got  # asked again for the same codes: nothing to do
        codes = new
    assert len(ways) == 5


def test_codes_made_under_inference_mode_are_counted_in_full_and_never_held():
    table, g = ColumnLevels(1), torch.Generator().manual_seed(5)
    with torch.inference_mode():
        codes = torch.randint(-1, 2, (6, 9), generator=g, dtype=torch.int8)
        later = -codes
    table.offer(codes, later, torch.arange(54), codes.flatten(), later.flatten())
    assert table.counts(codes).tolist() == _brute_columns(codes, 1) and table.table is None
    assert table.counts(later).tolist() == _brute_columns(later, 1)


def test_the_table_refuses_codes_that_are_not_a_linear_layers():
    with pytest.raises(ValueError, match=r"linear layer, \[O, I\]"):
        ColumnLevels(1).counts(torch.zeros(2, 3, 3, dtype=torch.int8))


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_the_blocked_change_index_equals_nonzero(block, monkeypatch):
    monkeypatch.setattr(transitions, "_CHANGE_BLOCK", block)
    g = torch.Generator().manual_seed(block)
    for shape in [(0,), (1,), (5, 9), (3, 4, 17)]:
        a = torch.randint(-1, 2, shape, generator=g, dtype=torch.int8)
        b = torch.where(torch.rand(shape, generator=g) < 0.4, -a, a)
        out = torch.ones(shape, dtype=torch.bool)
        mask, index = transitions.changed_index(a, b, out=out)
        assert mask is out and torch.equal(mask, a != b)
        assert index.dtype == torch.int64 and index.tolist() == [
            i for i, (x, y) in enumerate(zip(a.flatten().tolist(), b.flatten().tolist(), strict=True)) if x != y
        ]
        wrong = torch.ones(7, dtype=torch.bool)  # an unusable buffer is not written into
        assert torch.equal(transitions.changed_index(a, b, out=wrong)[0], a != b) and bool(wrong.all())


def test_the_spike_total_is_exact_past_float32s_integers():
    n = (1 << 24) + 3  # past 2**24 + 1, the first integer float32 does not hold
    total = spike_total(torch.ones(n))
    assert total.dtype == torch.float64 and int(total) == n
    g = torch.Generator().manual_seed(0)
    spikes = (torch.rand(4, 3, 50, generator=g) < 0.3).to(torch.bfloat16)
    assert int(spike_total(spikes)) == sum(1 for v in spikes.flatten().tolist() if v == 1.0)


@pytest.mark.parametrize("n, k", [(10, 4), (10, 10), (3 << 20, 16), (3 << 20, 0)])
def test_the_followed_weights_are_distinct_draws(n, k):
    first = draw_without_replacement(n, k, torch.Generator().manual_seed(3))
    again = draw_without_replacement(n, k, torch.Generator().manual_seed(3))
    assert first.dtype == torch.int64 and first.numel() == k and torch.equal(first, again)
    assert len(set(first.tolist())) == k and all(0 <= i < n for i in first.tolist())
