"""Input encoders: direct (repeat), rate (Bernoulli) and latency (time to first spike), all [B, ...] -> [T, B, ...]."""

import pytest
import torch

from quest_lightning.nn import DirectEncoder, LatencyEncoder, RateEncoder, make_encoder


@pytest.mark.parametrize("kind", ["direct", "rate", "latency"])
@pytest.mark.parametrize("shape", [(2, 3), (2, 1, 4, 4)])
def test_output_shape(kind, shape):
    out = make_encoder(kind, 5)(torch.rand(shape))
    assert out.shape == (5, *shape)
    assert out.dtype == torch.float32


def test_direct_repeats_exactly_without_copy():
    x = torch.randn(3, 2, 4, 4)
    out = DirectEncoder(4)(x)
    for t in range(4):
        assert torch.equal(out[t], x)
    assert out.stride(0) == 0 and out.data_ptr() == x.data_ptr()


def test_rate_spike_probability_is_the_intensity():
    torch.manual_seed(0)
    intensity = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
    out = RateEncoder(10)(intensity.repeat(2000, 1))  # [T, 2000, 6]: 20000 draws per intensity
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    rate = out.mean(dim=(0, 1))
    # binomial standard error <= sqrt(0.25 / 20000) = 0.0035; 0.02 is about six of them
    torch.testing.assert_close(rate, intensity, rtol=0, atol=0.02)
    assert rate[0] == 0 and rate[-1] == 1
    # each step is an independent draw: the steps are not copies of one another
    assert not torch.equal(out[0], out[1])


def test_rate_clamps_out_of_range_input():
    torch.manual_seed(0)
    out = RateEncoder(3)(torch.tensor([[-0.5, 1.7]]))
    assert out[:, 0, 0].sum() == 0 and out[:, 0, 1].sum() == 3


def test_latency_one_spike_at_most_and_brighter_earlier():
    intensity = torch.tensor([[0.0, 0.005, 0.05, 0.2, 0.4, 0.6, 0.8, 1.0]])
    out = LatencyEncoder(8)(intensity)[:, 0]  # [T, 8]
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    counts = out.sum(0)
    assert (counts <= 1).all()
    assert counts[:2].tolist() == [0, 0]  # below the threshold (0.01): no spike
    assert (counts[2:] == 1).all()
    first = out.argmax(0)[2:]
    assert (first.diff() < 0).all()  # strictly earlier for every brighter input here
    assert first[-1] == 0 and first[0] == 7  # full intensity fires first, the dimmest last


@pytest.mark.parametrize("cls", [DirectEncoder, RateEncoder, LatencyEncoder])
@pytest.mark.parametrize("timesteps", [0, -1])
def test_fewer_than_one_step_raises(cls, timesteps):
    with pytest.raises(ValueError, match=rf"timesteps \(T\) = {timesteps} must be an integer >= 1"):
        cls(timesteps)


def test_unbatched_input_and_unknown_kind_raise():
    with pytest.raises(ValueError, match=r"expects a batch \[B, \.\.\.\]"):
        DirectEncoder(2)(torch.rand(5))
    with pytest.raises(ValueError, match="encoder='poisson' is unknown"):
        make_encoder("poisson", 4)
