"""Transition counts against a brute force: the functional ``transition_counts``, the ``TransitionCounter`` meter and
the ``WeightTransitionMonitor`` inside a real Trainer run, whose codes an independent callback captures."""

import lightning.pytorch as pl
import pytest
import torch
from callback_helpers import CodeSnapshots
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.metrics import TransitionCounter, transition_counts, transition_summary
from quest_lightning.nn import SpikingVGG


def brute_force_transitions(previous, current, qmax):
    levels = 2 * qmax + 1
    counts = [[0] * levels for _ in range(levels)]
    for old, new in zip(previous.flatten().tolist(), current.flatten().tolist(), strict=True):
        counts[old + qmax][new + qmax] += 1
    return counts


def brute_force_summary(counts):
    levels = len(counts)
    total = sum(map(sum, counts))
    frozen = sum(counts[i][i] for i in range(levels))
    changed = total - frozen
    far = sum(counts[i][j] for i in range(levels) for j in range(levels) if abs(i - j) > 1)
    return {
        "frozen_fraction": frozen / total,
        "changed_fraction": changed / total,
        "non_adjacent_fraction": far / changed if changed else 0.0,
    }


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_transition_counts_match_brute_force(bits):
    qmax = 2 ** (bits - 1) - 1
    gen = torch.Generator().manual_seed(bits)
    previous = torch.randint(-qmax, qmax + 1, (5, 4, 3, 3), generator=gen, dtype=torch.int8)
    flip = torch.rand(previous.shape, generator=gen) < 0.3
    current = torch.where(flip, torch.randint(-qmax, qmax + 1, previous.shape, generator=gen), previous).to(torch.int8)
    expected = brute_force_transitions(previous, current, qmax)
    got = transition_counts(previous, current, qmax)
    assert got.dtype == torch.int64 and got.tolist() == expected
    assert transition_summary(got)._asdict() == pytest.approx(brute_force_summary(expected))

    meter = TransitionCounter(qmax)
    meter.update(previous, current)
    meter.update(current, previous)
    back = brute_force_transitions(current, previous, qmax)
    assert meter.compute().tolist() == [
        [a + b for a, b in zip(r, s, strict=True)] for r, s in zip(expected, back, strict=True)
    ]
    assert int(meter.steps) == 2


def test_transition_counts_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="code shapes differ"):
        transition_counts(torch.zeros(3, dtype=torch.int8), torch.zeros(4, dtype=torch.int8), 1)


class CaptureLogger(Logger):
    """Keeps every logged scalar in memory: ``history[key] = [(step, value), ...]``."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[tuple[int, float]]] = {}

    @property
    def name(self):
        return "capture"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        for key, value in metrics.items():
            self.history.setdefault(key, []).append((step, float(value)))


def _fit(monitor, epochs=2, batches=8, batch_size=4, accumulate=1):
    pl.seed_everything(0, verbose=False)
    x = torch.rand(batches * batch_size, 1, 8, 8)
    y = torch.randint(0, 10, (batches * batch_size,))
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10, bits=2)
    module = QuestModule(net, timesteps=2, lr=0.05, schedule="none")
    recorder, logger = CodeSnapshots(), CaptureLogger()
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[monitor, recorder],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accumulate_grad_batches=accumulate,
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=batch_size))
    return recorder, logger


CASES = {
    "two_windows": (dict(stages=[("early", 1, 3), ("late", 5, 7)]), {"early": (0, 1, 3, 1), "late": (0, 5, 7, 1)}),
    "every_2nd": (dict(stages=[("w", 2, 7)], every_n_steps=2), {"w": (0, 2, 7, 2)}),
    "all": (dict(stages="all"), {"all@epoch0": (0, 1, 8, 1), "all@epoch1": (1, 1, 8, 1)}),
    "second_epoch": (dict(stages=[("e1", 3, 99, 1)]), {"e1": (1, 3, 8, 1)}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_monitor_counts_equal_brute_force_over_captured_codes(case, one_thread):
    kwargs, windows = CASES[case]
    monitor = WeightTransitionMonitor(trajectories=3, **kwargs)
    recorder, logger = _fit(monitor)
    assert set(monitor.results) == set(windows)
    got = monitor.transition_counts()
    for key, (epoch, first, last, every) in windows.items():
        observed = list(range(first, last + 1, every))
        result = monitor.results[key]
        assert result["steps"] == len(observed)
        assert result["samples"] == 4 * len(observed)
        assert result["epoch"] == epoch
        for name, counts in got[key].items():
            qmax = result["layers"][name]["qmax"]
            expected = [[0] * (2 * qmax + 1) for _ in range(2 * qmax + 1)]
            trajectory = [recorder.before[(epoch, observed[0])][name].flatten()]
            for b in observed:
                step = brute_force_transitions(
                    recorder.before[(epoch, b)][name], recorder.after[(epoch, b)][name], qmax
                )
                expected = [[a + c for a, c in zip(r, s, strict=True)] for r, s in zip(expected, step, strict=True)]
                trajectory.append(recorder.after[(epoch, b)][name].flatten())
            assert counts.tolist() == expected, (key, name)
            changed = sum(map(sum, expected)) - sum(expected[i][i] for i in range(len(expected)))
            assert changed > 0, "the run is meant to move some codes"
            summary = brute_force_summary(expected)
            for stat, value in summary.items():
                assert result["layers"][name][stat] == pytest.approx(value)
            logged = logger.history[f"transitions/{key}/{name}/frozen_fraction"]
            assert [v for _, v in logged] == [pytest.approx(summary["frozen_fraction"])]
            # followed weights: their codes at the start of the stage and after every observed step
            picked = monitor.followed_weights[name]
            traj = torch.tensor(result["layers"][name]["trajectory"])
            assert traj.shape == (3, len(observed) + 1)
            assert traj.tolist() == torch.stack([t[picked] for t in trajectory]).T.tolist()


def test_gradient_accumulation_counts_optimizer_steps_and_all_their_samples(one_thread):
    """With 2 batches per optimizer step, ``every_n_steps=2`` observes steps 0 and 2 of the stage (batches 1–2 and
    5–6), each one transition from the codes before its first batch to the codes after its last, of 2 × 4 samples."""
    monitor = WeightTransitionMonitor(stages=[("w", 1, 8)], every_n_steps=2, trajectories=0)
    recorder, _ = _fit(monitor, epochs=1, accumulate=2)
    result = monitor.results["w"]
    assert result["steps"] == 2 and result["samples"] == 16
    for name, counts in monitor.transition_counts()["w"].items():
        qmax = result["layers"][name]["qmax"]
        first = brute_force_transitions(recorder.before[(0, 1)][name], recorder.after[(0, 2)][name], qmax)
        second = brute_force_transitions(recorder.before[(0, 5)][name], recorder.after[(0, 6)][name], qmax)
        assert counts.tolist() == [
            [a + b for a, b in zip(r, s, strict=True)] for r, s in zip(first, second, strict=True)
        ]
        # the weights do not move inside an accumulation window
        assert torch.equal(recorder.before[(0, 2)][name], recorder.before[(0, 1)][name])
