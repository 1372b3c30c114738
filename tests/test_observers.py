"""Tests for tinyq.quant.observers: properties, hand-derived cases, torch observers as an optional oracle."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyq.formats.affine import QParams, calculate_qparams, dequantize, fake_quantize, quantization_mse
from tinyq.quant.observers import (OBSERVERS, PerChannelObservers, EntropyObserver, Histogram, MinMaxObserver, MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver, MSEObserver, PerChannelMinMaxObserver,
                                   PercentileObserver, make_observer)


def batches(rng, count=4, shape=(8, 3, 5), spread=2.0):
    return [(rng.standard_normal(shape) * spread * (i + 1) + i).astype(np.float32) for i in range(count)]


# ---------------------------------------------------------------- MinMax (exercise 6.1)

@pytest.mark.exercise("6.1")
def test_minmax_observer_tracks_running_min_and_max():
    observer = MinMaxObserver(symmetric=True)
    first, second = np.array([0.5, -1.0, 2.0], np.float32), np.array([[3.0, -0.25]], np.float32)
    assert observer.observe(first) is first                  # returns its input unchanged
    assert (observer.min_val, observer.max_val) == (-1.0, 2.0)
    observer.observe(second)
    assert (observer.min_val, observer.max_val) == (-1.0, 3.0)
    observer.observe(np.array([-5.0, 0.0], np.float32))
    assert (observer.min_val, observer.max_val) == (-5.0, 3.0)
    # symmetric int8: scale = 5 / 127.5, zero_point 0
    assert observer.calculate_qparams() == QParams(np.float32(5.0) / np.float32(127.5), 0, 8, True)


@pytest.mark.exercise("6.1")
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel_minmax_observer_reduces_every_other_axis(axis):
    rng = np.random.default_rng(3)
    data = batches(rng)
    observer = PerChannelMinMaxObserver(axis=axis, symmetric=True)
    for batch in data:
        observer.observe(batch)
    everything = np.concatenate(data, axis=0 if axis != 0 else 1)       # batches stacked along a non-channel axis
    other_axes = tuple(d for d in range(3) if d != axis % 3)
    assert np.array_equal(observer.min_val, everything.min(axis=other_axes))
    assert np.array_equal(observer.max_val, everything.max(axis=other_axes))
    qp = observer.calculate_qparams()
    assert qp.axis == axis % 3 and qp.scale.shape == (data[0].shape[axis],)


@pytest.mark.exercise("6.1")
@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 59), max_size=4))
def test_minmax_observer_is_independent_of_batching(seed, cuts):
    x = np.random.default_rng(seed).standard_normal(60).astype(np.float32)
    observer = MinMaxObserver(symmetric=True, bits=4)
    for piece in np.split(x, sorted(set(cuts))):
        observer.observe(piece)
    assert (observer.min_val, observer.max_val) == (x.min(), x.max())
    assert observer.calculate_qparams() == calculate_qparams(x.min(), x.max(), bits=4, symmetric=True)


def test_minmax_affine_qparams_equal_calculate_qparams_of_the_range():
    observer = MinMaxObserver(bits=6)
    observer.observe(np.array([0.5, 3.0], np.float32))
    assert observer.calculate_qparams() == calculate_qparams(0.5, 3.0, bits=6)


# ---------------------------------------------------------------- moving average

def test_moving_average_first_batch_initialises_then_averages():
    observer = MovingAverageMinMaxObserver()
    observer.observe(np.array([-1.0, 2.0], np.float32))
    assert (observer.min_val, observer.max_val) == (-1.0, 2.0)
    observer.observe(np.array([-3.0, 12.0], np.float32))
    # -1 + 0.01 · (-3 − (-1)) = -1.02 ; 2 + 0.01 · (12 − 2) = 2.1
    assert observer.min_val == pytest.approx(-1.02, rel=1e-6) and observer.max_val == pytest.approx(2.1, rel=1e-6)
    assert observer.min_val.dtype == np.float32


def test_moving_average_per_channel():
    observer = MovingAveragePerChannelMinMaxObserver(axis=1, averaging_constant=0.5)
    observer.observe(np.array([[0.0, 1.0], [-2.0, 3.0]], np.float32))
    observer.observe(np.array([[-4.0, 1.0], [2.0, 5.0]], np.float32))
    # channel 0: min -2 then -4 -> -3, max 0 then 2 -> 1; channel 1: min 1 then 1 -> 1, max 3 then 5 -> 4
    assert observer.min_val.tolist() == [-3.0, 1.0] and observer.max_val.tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="averaging_constant in \\(0, 1\\]"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)


# ---------------------------------------------------------------- errors and registry

@pytest.mark.parametrize("name", sorted(OBSERVERS))
def test_observer_without_data_raises(name):
    with pytest.raises(RuntimeError, match="observed no data"):
        make_observer(name).calculate_qparams()
    observer = make_observer(name)
    observer.observe(np.zeros((0, 3), np.float32))                  # an empty batch is no data either
    with pytest.raises(RuntimeError, match="observed no data"):
        observer.calculate_qparams()


@pytest.mark.parametrize("name", sorted(OBSERVERS))
def test_observers_reject_bad_input(name):
    with pytest.raises(ValueError, match="bits an integer in 2..16"):
        make_observer(name, bits=1)
    with pytest.raises(ValueError, match="bits an integer in 2..16"):
        make_observer(name, bits=17)
    with pytest.raises(ValueError, match="finite values"):
        make_observer(name).observe(np.array([1.0, np.nan], np.float32))


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_per_channel_axis_errors(cls):
    with pytest.raises(ValueError, match=r"axis=3 is out of range for input of shape \(2, 3\)"):
        cls(axis=3).observe(np.zeros((2, 3), np.float32))
    observer = cls(axis=0)
    observer.observe(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"expects 2 channels along axis 0, got shape \(4, 3\)"):
        observer.observe(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="expects an int axis"):
        PerChannelMinMaxObserver(axis=None)


@pytest.mark.parametrize("name", ["percentile", "mse", "entropy"])
def test_histogram_observers_are_per_tensor_only(name):
    with pytest.raises(ValueError, match="per-tensor only"):
        OBSERVERS[name](axis=0)
    assert OBSERVERS[name].per_tensor_only
    assert isinstance(make_observer(name, axis=0), PerChannelObservers)   # make_observer asks the class


def test_make_observer_by_name():
    assert set(OBSERVERS) == {"minmax", "moving_average", "percentile", "mse", "entropy"}
    observer = make_observer("minmax", bits=4, symmetric=True, axis=0)
    assert isinstance(observer, MinMaxObserver) and observer.bits == 4 and observer.axis == 0
    with pytest.raises(ValueError, match="unknown observer 'kl'; known observers: entropy, minmax, moving_average"):
        make_observer("kl")


@pytest.mark.parametrize("name", sorted(OBSERVERS))
@pytest.mark.parametrize("symmetric", [False, True])
def test_every_observer_gives_valid_qparams_within_the_observed_range(name, symmetric):
    rng = np.random.default_rng(7)
    observer = make_observer(name, symmetric=symmetric, bits=8)
    data = batches(rng, shape=(500,))
    for batch in data:
        observer.observe(batch)
    qp = observer.calculate_qparams()
    everything = np.concatenate(data)
    assert isinstance(qp, QParams) and qp.signed == symmetric
    assert dequantize(np.array([qp.zero_point]), qp)[0] == 0.0
    lowest, highest = dequantize(np.array([qp.qmin, qp.qmax]), qp)
    step = qp.scale
    amax = np.abs(everything).max()
    assert lowest >= min(everything.min(), -amax if symmetric else 0) - 2 * step
    assert highest <= max(everything.max(), amax if symmetric else 0) + 2 * step


@pytest.mark.parametrize("name", sorted(OBSERVERS))
@pytest.mark.parametrize("value", [0.0, 2.5, -1.0])
def test_constant_data_gives_a_valid_grid(name, value):
    observer = make_observer(name)
    observer.observe(np.full(10, value, np.float32))
    observer.observe(np.full(3, value, np.float32))
    qp = observer.calculate_qparams()
    assert abs(fake_quantize(np.float32(value), qp) - value) <= qp.scale / 2 * (1 + 1e-6)


# ---------------------------------------------------------------- histogram, percentile, MSE, entropy

def test_histogram_rebinning_keeps_the_mass_and_the_quantiles():
    rng = np.random.default_rng(0)
    histogram = Histogram(bins=2048)
    pieces = [rng.standard_normal(5000).astype(np.float32) * scale for scale in (0.1, 1.0, 3.0, 10.0)]
    for piece in pieces:                                  # the range grows with every batch
        histogram.update(piece)
    everything = np.concatenate(pieces)
    assert histogram.counts.sum() == pytest.approx(everything.size)
    assert (histogram.lo, histogram.hi) == (everything.min(), everything.max())
    width = (histogram.hi - histogram.lo) / histogram.bins
    for fraction in (0.01, 0.25, 0.5, 0.9, 0.999):
        assert abs(histogram.quantile(fraction) - np.quantile(everything, fraction)) <= 4 * width
    abs_counts, amax = histogram.abs_histogram()
    assert amax == np.abs(everything).max() and abs_counts.sum() == pytest.approx(everything.size)


@pytest.mark.parametrize("symmetric", [False, True])
def test_percentile_observer_matches_numpy_percentiles(symmetric):
    rng = np.random.default_rng(1)
    pieces = [rng.laplace(size=4000).astype(np.float32) * s for s in (0.5, 1.0, 2.0)]
    observer = PercentileObserver(percentile=99.0, symmetric=symmetric)
    for piece in pieces:
        observer.observe(piece)
    everything = np.concatenate(pieces)
    lo, hi = observer._clip_range()
    width = (everything.max() - everything.min()) / 2048
    if symmetric:
        threshold = np.percentile(np.abs(everything), 99.0)
        assert abs(hi - threshold) <= 4 * width and abs(-lo - threshold) <= 4 * width
    else:
        assert abs(lo - np.percentile(everything, 1.0)) <= 4 * width
        assert abs(hi - np.percentile(everything, 99.0)) <= 4 * width
    assert hi < everything.max() and lo > everything.min()


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mse_observer_beats_minmax_on_laplace_data(bits, symmetric):
    rng = np.random.default_rng(bits)
    x = rng.laplace(size=20000).astype(np.float32)
    mse, minmax = MSEObserver(bits=bits, symmetric=symmetric), MinMaxObserver(bits=bits, symmetric=symmetric)
    for piece in np.array_split(x, 4):
        mse.observe(piece)
        minmax.observe(piece)
    clipped, full = mse.calculate_qparams(), minmax.calculate_qparams()
    assert mse.alpha < 1.0
    assert quantization_mse(x, clipped) < quantization_mse(x, full)


def test_entropy_observer_clips_heavy_tailed_outliers():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(50000).astype(np.float32)
    x[:10] = rng.uniform(40, 60, size=10) * rng.choice([-1, 1], size=10)      # rare outliers
    observer = EntropyObserver(symmetric=True)
    for piece in np.array_split(x, 5):
        observer.observe(piece)
    qp = observer.calculate_qparams()
    assert 2.0 < observer.threshold < 0.5 * np.abs(x).max()
    assert qp.scale == pytest.approx(observer.threshold / 127.5, rel=1e-3)


@pytest.mark.parametrize("symmetric", [False, True])
def test_entropy_observer_keeps_the_max_on_uniform_data(symmetric):
    rng = np.random.default_rng(4)
    x = rng.uniform(-1.0, 1.0, size=50000).astype(np.float32)
    observer = EntropyObserver(symmetric=symmetric)
    observer.observe(x)
    observer.calculate_qparams()
    assert observer.threshold >= 0.95 * np.abs(x).max()


def test_entropy_observer_uses_all_levels_for_one_sided_data():
    positive = np.abs(np.random.default_rng(5).standard_normal(1000)).astype(np.float32)
    for symmetric, data, levels in [(False, positive, 256), (True, positive, 128), (False, positive - 1, 128)]:
        observer = EntropyObserver(bits=8, symmetric=symmetric)
        observer.observe(data)
        assert observer._levels() == levels


# ---------------------------------------------------------------- torch oracle

TORCH_SETTINGS = [("quint8", False), ("qint8", True), ("quint8", True), ("qint8", False)]


def _torch_pair(torch, ours_cls, torch_cls, dtype_name, symmetric, per_channel, **kwargs):
    dtype = getattr(torch, dtype_name)
    if per_channel:
        scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        theirs = torch_cls(ch_axis=1, dtype=dtype, qscheme=scheme, **kwargs)
        ours = ours_cls(axis=1, symmetric=symmetric, signed=dtype_name == "qint8", **kwargs)
    else:
        scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        theirs = torch_cls(dtype=dtype, qscheme=scheme, **kwargs)
        ours = ours_cls(symmetric=symmetric, signed=dtype_name == "qint8", **kwargs)
    return ours, theirs


@pytest.mark.parametrize("dtype_name, symmetric", TORCH_SETTINGS)
@pytest.mark.parametrize("kind", ["minmax", "moving_average", "per_channel_minmax", "per_channel_moving_average"])
def test_observers_match_torch(dtype_name, symmetric, kind):
    torch = pytest.importorskip("torch")
    from torch.ao import quantization as tq
    pairs = {"minmax": (MinMaxObserver, tq.MinMaxObserver, False),
             "moving_average": (MovingAverageMinMaxObserver, tq.MovingAverageMinMaxObserver, False),
             "per_channel_minmax": (MinMaxObserver, tq.PerChannelMinMaxObserver, True),
             "per_channel_moving_average": (MovingAverageMinMaxObserver,
                                            tq.MovingAveragePerChannelMinMaxObserver, True)}
    ours_cls, torch_cls, per_channel = pairs[kind]
    ours, theirs = _torch_pair(torch, ours_cls, torch_cls, dtype_name, symmetric, per_channel)
    rng = np.random.default_rng([len(kind), int(symmetric), int(dtype_name == "qint8")])
    for batch in batches(rng, count=5, shape=(6, 4, 7)):
        batch = batch + np.float32(rng.uniform(-3, 3))            # sometimes one-sided per channel
        ours.observe(batch)
        theirs(torch.from_numpy(batch))
    qp = ours.calculate_qparams()
    scale, zero_point = theirs.calculate_qparams()
    assert np.array_equal(np.atleast_1d(np.float32(qp.scale)), scale.numpy())
    assert np.array_equal(np.atleast_1d(qp.zero_point), zero_point.numpy())


def test_entropy_observer_is_not_fooled_by_the_zero_spike_of_relu_outputs():
    """Half of a ReLU output is exactly 0; the chosen range must still keep the quantization MSE near min-max's."""
    x = np.maximum(np.random.default_rng(0).standard_normal(200_000), 0).astype(np.float32)
    entropy = EntropyObserver()
    entropy.observe(x)
    minmax = MinMaxObserver()
    minmax.observe(x)
    assert quantization_mse(x, entropy.calculate_qparams()) < 3 * quantization_mse(x, minmax.calculate_qparams())


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_entropy_observer_keeps_the_range_of_discrete_pixel_data(bits):
    """Pixels k/16 (the digits inputs): a candidate holding one spike scores KL 0 like the full range;
    the tie must go to the full range, or the input layer is clipped at 1/16."""
    values = np.arange(17, dtype=np.float32) / 16
    x = np.random.default_rng(1).choice(values, size=50_000, p=np.r_[0.5, np.full(16, 0.5 / 16)]).astype(np.float32)
    entropy, minmax = EntropyObserver(bits=bits), MinMaxObserver(bits=bits)
    entropy.observe(x)
    minmax.observe(x)
    assert quantization_mse(x, entropy.calculate_qparams()) < 3 * quantization_mse(x, minmax.calculate_qparams())


def test_entropy_observer_keeps_the_bright_pixels_of_standardized_images():
    """MNIST-like pixels standardized with (x - 0.1307) / 0.3081: the background makes a spike at -0.424,
    not at 0. The KL search must not clip the range onto that spike (issue 9, bug 6)."""
    rng = np.random.default_rng(0)
    pixels = np.where(rng.random((64, 784)) < 0.8, 0, rng.integers(1, 256, (64, 784))) / 255.0
    pixels[:, :20] = 1.0                                          # saturated strokes: a second spike at the top
    x = ((pixels - 0.1307) / 0.3081).astype(np.float32)
    entropy, minmax = EntropyObserver(bits=8), MinMaxObserver(bits=8)
    for batch in np.split(x, 4):
        entropy.observe(batch)
        minmax.observe(batch)
    qp = entropy.calculate_qparams()
    lo, hi = qp.scale * (qp.qmin - qp.zero_point), qp.scale * (qp.qmax - qp.zero_point)
    assert lo <= x.min() + qp.scale and hi >= 0.9 * x.max()       # the range keeps the bright pixels
    assert quantization_mse(x, qp) < 3 * quantization_mse(x, minmax.calculate_qparams())


def test_entropy_observer_handles_a_spike_away_from_zero_in_the_middle_of_the_data():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.full(30_000, 0.7), rng.standard_normal(20_000)]).astype(np.float32)
    entropy = EntropyObserver(bits=8, symmetric=True)
    entropy.observe(x)
    threshold = entropy.calculate_qparams().scale * 127.5
    assert threshold > 2.5                                        # the Gaussian tails, not the spike, set T


@pytest.mark.exercise("6.3")
def test_histogram_quantile_interpolates_inside_a_bin_by_hand():
    histogram = Histogram(bins=3)
    histogram.update(np.array([0.5, 1.5, 2.2, 2.8, 3.0]))              # lo 0.5, hi 3: bins of width 5/6
    # counts [1, 1, 3]: F at the edges 0.5, 4/3, 13/6, 3 is 0, 1, 2, 5
    assert histogram.counts.tolist() == [1.0, 1.0, 3.0]
    assert histogram.quantile(0.2) == pytest.approx(4 / 3)             # F = 1 exactly at an edge
    assert histogram.quantile(0.7) == pytest.approx(13 / 6 + (3.5 - 2) / 3 * 5 / 6)
    assert histogram.quantile(0.0) == pytest.approx(0.5) and histogram.quantile(1.0) == pytest.approx(3.0)


@pytest.mark.exercise("6.3")
@pytest.mark.parametrize("percentile", [99.0, 99.9])
def test_percentile_observer_matches_numpy_within_a_bin(percentile):
    rng = np.random.default_rng(3)
    data = rng.standard_normal(50_000).astype(np.float32)
    observer = PercentileObserver(percentile=percentile, bins=2048)
    for batch in np.split(data, 5):
        observer.observe(batch)
    lo, hi = observer._clip_range()
    width = (data.max() - data.min()) / 2048
    assert abs(hi - np.percentile(data, percentile)) <= 2 * width
    assert abs(lo - np.percentile(data, 100 - percentile)) <= 2 * width


def _mse_alpha_by_brute_force(values, bits, candidates, bins):
    """The alpha in (0, 1] minimising sum_bins count (c - Q_alpha(c))^2, Q_alpha the asymmetric grid on alpha·[lo, hi]."""
    counts, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    lo, hi = min(values.min(), 0.0), max(values.max(), 0.0)
    errors = []
    for alpha in np.arange(1, candidates + 1) / candidates:
        scale = alpha * (hi - lo) / (2 ** bits - 1)
        zero_point = np.clip(-np.rint(alpha * lo / scale), 0, 2 ** bits - 1)
        codes = np.clip(np.rint(centres / scale) + zero_point, 0, 2 ** bits - 1)
        errors.append(np.sum(counts * (scale * (codes - zero_point) - centres) ** 2))
    return (np.argmin(errors) + 1) / candidates, errors


@pytest.mark.exercise("6.4")
def test_mse_observer_picks_the_alpha_of_least_histogram_error():
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.standard_normal(20_000), [40.0]]).astype(np.float32)  # one far outlier
    observer = MSEObserver(bits=4, num_candidates=50, bins=512)
    observer.observe(values)
    lo, hi = observer._clip_range()
    alpha, errors = _mse_alpha_by_brute_force(values, 4, 50, 512)
    assert observer.alpha == pytest.approx(alpha) and alpha < 0.5       # the outlier is clipped
    assert hi == pytest.approx(alpha * values.max(), rel=1e-6) and lo == pytest.approx(alpha * values.min(), rel=1e-6)
    assert min(errors) < errors[-1]                                    # better than min-max (alpha = 1)


@pytest.mark.exercise("6.4")
def test_mse_observer_keeps_the_full_range_without_outliers():
    values = np.linspace(-1.0, 1.0, 4001, dtype=np.float32)           # uniform: clipping only hurts
    observer = MSEObserver(bits=8, num_candidates=20, bins=256)
    observer.observe(values)
    lo, hi = observer._clip_range()
    assert observer.alpha == 1.0 and (lo, hi) == (-1.0, 1.0)
