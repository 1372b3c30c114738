"""Observers: watch float tensors, then choose the range [lo, hi] that calculate_qparams turns into QParams.

One interface for all of them:
    observer.observe(x)          accumulate statistics of x; returns x unchanged (also `observer(x)`)
    observer.calculate_qparams() QParams for everything observed so far
    observer.state()             what it has seen, as named fixed-shape arrays (a quantizer module keeps
    observer.load_state(arrays)  them as buffers, so state_dict saves them); load_state puts them back

    minmax          MinMaxObserver: lo, hi = running min and max (per-tensor, or per-channel with axis=)
    moving_average  MovingAverageMinMaxObserver: lo ← lo + c·(min(x) − lo), c = 0.01 as PyTorch
    percentile      PercentileObserver: lo, hi = percentiles (or T = percentile of |x| when symmetric)
    mse             MSEObserver: clip [α·lo, α·hi] with the α that minimizes the quantization MSE
    entropy         EntropyObserver: symmetric threshold T minimizing KL(P ‖ Q) (TensorRT calibration)

The last three keep a fixed-size histogram (2048 bins by default), so memory does not
grow with the number of batches; they are per-tensor only (`per_tensor_only = True`):
`make_observer(name, axis=...)` gives one of them per channel (PerChannelObservers).
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from tinyq.formats.affine import FLOAT32_EPS, QParams, calculate_qparams, fake_quantize
from tinyq.formats.rounding import check_bits, integer_range

__all__ = ["Observer", "MinMaxObserver", "PerChannelMinMaxObserver", "MovingAverageMinMaxObserver",
           "MovingAveragePerChannelMinMaxObserver", "PercentileObserver", "MSEObserver", "EntropyObserver",
           "Histogram", "PerChannelObservers", "OBSERVERS", "make_observer"]


class Observer:
    """Base class: subclasses implement observe(x) and set min_val/max_val or override _clip_range()."""

    per_tensor_only = False      # True: one range per tensor only (make_observer builds PerChannelObservers)

    def __init__(self, bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                 axis: int | None = None, narrow_range: bool = False, eps: float = FLOAT32_EPS):
        check_bits(bits, type(self).__name__)
        if axis is not None and (not isinstance(axis, Integral) or isinstance(axis, bool)):
            raise ValueError(f"{type(self).__name__} expects axis None (per-tensor) or an int, got {axis!r}")
        self.bits, self.symmetric, self.axis = int(bits), bool(symmetric), axis
        self.signed = self.symmetric if signed is None else bool(signed)
        self.narrow_range, self.eps = bool(narrow_range), float(eps)
        self.reset()

    def reset(self) -> None:
        """Forget everything observed."""
        self.min_val = None          # float32: 0-d per-tensor, shape (C,) per-channel
        self.max_val = None
        self._channel_axis = None    # axis normalized to >= 0 once data has been seen

    @property
    def has_data(self) -> bool:
        return self.min_val is not None

    def observe(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.observe(x)

    def _check_batch(self, x) -> np.ndarray | None:
        """x as float32 (None if empty); NaN/inf, wrong axis and a changed channel count raise ValueError."""
        name = type(self).__name__
        array = np.asarray(x)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name}.observe expects a real-valued array, got dtype {array.dtype}")
        if self.axis is not None:
            if not -array.ndim <= self.axis < array.ndim:
                raise ValueError(f"{name} axis={self.axis} is out of range for input of shape {array.shape}")
            channel_axis = self.axis % array.ndim
            if self.min_val is not None and array.shape[channel_axis] != self.min_val.shape[0]:
                raise ValueError(f"{name} expects {self.min_val.shape[0]} channels along axis {self.axis}, "
                                 f"got shape {array.shape}")
            self._channel_axis = channel_axis
        if array.size == 0:
            return None
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            raise ValueError(f"{name}.observe expects finite values, got NaN or inf")
        return array

    def state(self, num_channels: int | None = None) -> dict:
        """{"min_val", "max_val"} as float32 arrays, +inf / -inf before any data; shape () per tensor,
        (num_channels,) per channel."""
        shape = () if self.axis is None else (int(num_channels),)
        if self.min_val is None:
            return {"min_val": np.full(shape, np.inf, np.float32), "max_val": np.full(shape, -np.inf, np.float32)}
        return {"min_val": np.asarray(self.min_val, np.float32).reshape(shape),
                "max_val": np.asarray(self.max_val, np.float32).reshape(shape)}

    def load_state(self, state: dict) -> None:
        """Put back what state() returned (no data if the range is empty)."""
        lo, hi = np.asarray(state["min_val"], np.float32), np.asarray(state["max_val"], np.float32)
        if not np.all(lo <= hi):
            self.reset()
            return
        self.min_val, self.max_val = (lo[()], hi[()]) if lo.ndim == 0 else (lo.copy(), hi.copy())
        self._channel_axis = self.axis

    def _clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The [lo, hi] handed to calculate_qparams; min-max by default."""
        return self.min_val, self.max_val

    def calculate_qparams(self) -> QParams:
        """QParams covering _clip_range() with this observer's bits/symmetric/signed/narrow_range."""
        if not self.has_data:
            raise RuntimeError(f"{type(self).__name__} has observed no data; "
                               "call observe(x) before calculate_qparams()")
        lo, hi = self._clip_range()
        return calculate_qparams(lo, hi, bits=self.bits, symmetric=self.symmetric, signed=self.signed,
                                 axis=self._channel_axis, narrow_range=self.narrow_range, eps=self.eps)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(bits={self.bits}, symmetric={self.symmetric}, signed={self.signed}, "
                f"axis={self.axis}, min_val={self.min_val}, max_val={self.max_val})")


def _batch_min_max(batch: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) over the whole batch, or over every axis but channel_axis (one value per channel)."""
    ### BEGIN SOLUTION 6.1
    if channel_axis is None:
        return batch.min(), batch.max()
    rows = np.moveaxis(batch, channel_axis, 0).reshape(batch.shape[channel_axis], -1)
    return rows.min(axis=1), rows.max(axis=1)
    ### END SOLUTION


class MinMaxObserver(Observer):
    """lo = min over all observed x, hi = max over all observed x (per channel along `axis` if given)."""

    def observe(self, x: np.ndarray) -> np.ndarray:
        """min_val ← min(min_val, min x), max_val ← max(max_val, max x); returns x unchanged."""
        batch = self._check_batch(x)
        if batch is None:
            return x
        ### BEGIN SOLUTION 6.1
        batch_min, batch_max = _batch_min_max(batch, self._channel_axis)
        if self.min_val is None:
            self.min_val, self.max_val = batch_min, batch_max
        else:
            self.min_val = np.minimum(self.min_val, batch_min)
            self.max_val = np.maximum(self.max_val, batch_max)
        return x
        ### END SOLUTION


class PerChannelMinMaxObserver(MinMaxObserver):
    """MinMaxObserver with one (lo, hi) per slice along `axis` (default 0: output channels of OIHW weights)."""

    def __init__(self, axis: int = 0, **kwargs):
        if axis is None:
            raise ValueError("PerChannelMinMaxObserver expects an int axis, got None (use MinMaxObserver)")
        super().__init__(axis=axis, **kwargs)


class MovingAverageMinMaxObserver(Observer):
    """lo ← lo + c·(min x − lo), hi ← hi + c·(max x − hi); the first batch initialises lo, hi (PyTorch's rule)."""

    def __init__(self, averaging_constant: float = 0.01, **kwargs):
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"MovingAverageMinMaxObserver expects averaging_constant in (0, 1], "
                             f"got {averaging_constant!r}")
        self.averaging_constant = float(averaging_constant)
        super().__init__(**kwargs)

    def observe(self, x: np.ndarray) -> np.ndarray:
        batch = self._check_batch(x)
        if batch is None:
            return x
        batch_min, batch_max = _batch_min_max(batch, self._channel_axis)
        if self.min_val is None:
            self.min_val, self.max_val = batch_min, batch_max
        else:
            c = np.float32(self.averaging_constant)
            self.min_val = self.min_val + c * (batch_min - self.min_val)
            self.max_val = self.max_val + c * (batch_max - self.max_val)
        return x


class MovingAveragePerChannelMinMaxObserver(MovingAverageMinMaxObserver):
    """MovingAverageMinMaxObserver with one (lo, hi) per slice along `axis` (default 0)."""

    def __init__(self, axis: int = 0, **kwargs):
        if axis is None:
            raise ValueError("MovingAveragePerChannelMinMaxObserver expects an int axis, got None")
        super().__init__(axis=axis, **kwargs)


class Histogram:
    """counts[i] = mass of observed values in [lo + i·w, lo + (i+1)·w), w = (hi − lo) / bins.

    When a batch falls outside [lo, hi] the range grows to cover it and the old counts are
    re-binned by assuming each old bin's mass is spread uniformly over the bin (linear
    interpolation of the cumulative counts). Counts are float64 because re-binning splits them.
    """

    def __init__(self, bins: int = 2048):
        if not isinstance(bins, Integral) or bins < 2:
            raise ValueError(f"Histogram expects bins an integer >= 2, got {bins!r}")
        self.bins = int(bins)
        self.counts = None
        self.lo = self.hi = None

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)

    def cumulative(self) -> np.ndarray:
        """F at the edges: F[0] = 0, F[bins] = total."""
        return np.concatenate([[0.0], np.cumsum(self.counts)])

    def _bin_index(self, values: np.ndarray) -> np.ndarray:
        width = (self.hi - self.lo) / self.bins
        if width == 0:
            return np.zeros(values.shape, dtype=np.int64)
        index = np.floor((values.astype(np.float64) - self.lo) / width)
        return np.clip(index, 0, self.bins - 1).astype(np.int64)

    def update(self, values: np.ndarray) -> None:
        values = values.ravel()
        lo, hi = float(values.min()), float(values.max())
        if self.counts is None:
            self.lo, self.hi = lo, hi
            self.counts = np.zeros(self.bins, dtype=np.float64)
        elif lo < self.lo or hi > self.hi:
            self._rebin(min(lo, self.lo), max(hi, self.hi))
        self.counts += np.bincount(self._bin_index(values), minlength=self.bins)

    def _rebin(self, lo: float, hi: float) -> None:
        old_lo, old_hi, old_edges, old_cumulative = self.lo, self.hi, self.edges, self.cumulative()
        self.lo, self.hi = lo, hi
        if old_hi == old_lo:                     # all mass sits at one point
            counts = np.zeros(self.bins, dtype=np.float64)
            counts[self._bin_index(np.array([old_lo]))[0]] = old_cumulative[-1]
        else:
            counts = np.diff(np.interp(self.edges, old_edges, old_cumulative))
        self.counts = counts

    def quantile(self, fraction: float) -> float:
        """Smallest t with F(t) = fraction · total, interpolating linearly inside a bin."""
        ### BEGIN SOLUTION 6.3
        cumulative, edges = self.cumulative(), self.edges
        target = fraction * cumulative[-1]
        i = int(np.searchsorted(cumulative, target, side="left"))
        if i == 0:
            return float(edges[0])
        i = min(i, self.bins)
        inside = cumulative[i] - cumulative[i - 1]
        step = 0.0 if inside == 0 else (target - cumulative[i - 1]) / inside
        return float(edges[i - 1] + step * (edges[i] - edges[i - 1]))
        ### END SOLUTION

    def abs_histogram(self) -> tuple[np.ndarray, float]:
        """(counts of |x| over [0, amax] in `bins` bins, amax), from F_|x|(t) = F(t) − F(−t)."""
        amax = max(-self.lo, self.hi, 0.0)
        abs_edges = np.linspace(0.0, amax, self.bins + 1)
        if self.hi == self.lo:
            counts = np.zeros(self.bins, dtype=np.float64)
            counts[-1 if amax > 0 else 0] = self.counts.sum()
            return counts, amax
        cumulative, edges = self.cumulative(), self.edges
        below = np.interp(abs_edges, edges, cumulative) - np.interp(-abs_edges, edges, cumulative)
        below[0] = 0.0
        below[-1] = cumulative[-1]
        return np.diff(below), amax


class _HistogramObserver(Observer):
    """Per-tensor observer that keeps a Histogram of x (bounded memory) and its min/max."""

    per_tensor_only = True

    def __init__(self, bins: int = 2048, **kwargs):
        super().__init__(**kwargs)
        if self.axis is not None:
            raise ValueError(f"{type(self).__name__} is per-tensor only (axis=None), got axis={self.axis}")
        self.histogram = Histogram(bins)

    def reset(self) -> None:
        super().reset()
        if hasattr(self, "histogram"):
            self.histogram = Histogram(self.histogram.bins)

    def observe(self, x: np.ndarray) -> np.ndarray:
        batch = self._check_batch(x)
        if batch is None:
            return x
        self.histogram.update(batch)
        self.min_val, self.max_val = np.float32(self.histogram.lo), np.float32(self.histogram.hi)
        return x

    def state(self, num_channels: int | None = None) -> dict:
        """min/max plus the histogram: counts (bins,) and its range [lo, hi] (NaN before any data)."""
        state = super().state(num_channels)
        if self.histogram.counts is None:
            state.update(histogram=np.zeros(self.histogram.bins), histogram_range=np.full(2, np.nan))
        else:
            state.update(histogram=self.histogram.counts.copy(),
                         histogram_range=np.array([self.histogram.lo, self.histogram.hi]))
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        lo, hi = (float(v) for v in np.asarray(state["histogram_range"], np.float64))
        self.histogram = Histogram(self.histogram.bins)
        if np.isfinite(lo) and np.isfinite(hi):
            self.histogram.lo, self.histogram.hi = lo, hi
            self.histogram.counts = np.array(state["histogram"], np.float64).reshape(self.histogram.bins)


class PercentileObserver(_HistogramObserver):
    """lo, hi = (100 − p)th and p-th percentile of x; symmetric: T = p-th percentile of |x|, range [−T, T].

    Percentiles are read off the histogram (linear inside a bin), so they are exact to one bin width.
    """

    def __init__(self, percentile: float = 99.99, bins: int = 2048, **kwargs):
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"PercentileObserver expects percentile in (50, 100], got {percentile!r}")
        self.percentile = float(percentile)
        super().__init__(bins=bins, **kwargs)

    def _clip_range(self):
        fraction = self.percentile / 100.0
        if self.symmetric:
            abs_counts, amax = self.histogram.abs_histogram()
            folded = Histogram(self.histogram.bins)
            folded.lo, folded.hi, folded.counts = 0.0, amax, abs_counts
            threshold = folded.quantile(fraction)
            return max(self.min_val, -threshold), min(self.max_val, threshold)
        return self.histogram.quantile(1.0 - fraction), self.histogram.quantile(fraction)


class MSEObserver(_HistogramObserver):
    """[lo, hi] = α*·[min, max] with α* = argmin_α Σ_bins count · (c − fake_quantize(c; α))², c = bin centres.

    α runs over num_candidates evenly spaced values in (0, 1]; α = 1 is plain min-max.
    """

    def __init__(self, num_candidates: int = 100, bins: int = 2048, **kwargs):
        if not isinstance(num_candidates, Integral) or num_candidates < 1:
            raise ValueError(f"MSEObserver expects num_candidates an integer >= 1, got {num_candidates!r}")
        self.num_candidates = int(num_candidates)
        super().__init__(bins=bins, **kwargs)

    def _clip_range(self):
        ### BEGIN SOLUTION 6.4
        edges = self.histogram.edges
        centres = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)
        counts = self.histogram.counts
        best_error, best_alpha = np.inf, 1.0
        for alpha in np.arange(1, self.num_candidates + 1) / self.num_candidates:
            qp = calculate_qparams(alpha * self.min_val, alpha * self.max_val, bits=self.bits,
                                   symmetric=self.symmetric, signed=self.signed,
                                   narrow_range=self.narrow_range, eps=self.eps)
            error = fake_quantize(centres, qp).astype(np.float64) - centres
            total = float(np.dot(counts, error * error))
            if total < best_error:
                best_error, best_alpha = total, alpha
        self.alpha = best_alpha
        return np.float32(best_alpha * self.min_val), np.float32(best_alpha * self.max_val)
        ### END SOLUTION


def _kl_divergence_of_clipping(counts: np.ndarray, kept_bins: int, levels: int) -> float:
    """KL(P ‖ Q): P = first kept_bins bins with the outliers folded into the last; Q = those bins merged
    into `levels` levels and spread back uniformly over each level's non-empty bins."""
    kept = counts[:kept_bins]
    reference = kept.copy()
    reference[-1] += counts[kept_bins:].sum()
    starts = (np.arange(levels) * kept_bins) // levels       # level j covers bins starts[j]..starts[j+1]-1
    lengths = np.diff(np.append(starts, kept_bins))
    occupied = (kept > 0).astype(np.float64)
    level_mass = np.add.reduceat(kept, starts)
    level_occupied = np.add.reduceat(occupied, starts)
    per_bin = np.divide(level_mass, level_occupied, out=np.zeros(levels), where=level_occupied > 0)
    candidate = np.repeat(per_bin, lengths) * occupied
    if candidate.sum() == 0:
        return np.inf
    p = reference / reference.sum()
    q = candidate / candidate.sum()
    support = p > 0
    q = np.where(support & (q == 0), 1e-12, q)                # smooth: outliers folded into an empty bin
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def _take_mass(counts: np.ndarray, index: int, amount: float) -> np.ndarray:
    """counts less `amount` units of mass taken from bin `index` and, if it holds less, from its nearest
    neighbours outward (re-binning may have spread one value over adjacent bins)."""
    counts = np.array(counts, dtype=np.float64, copy=True)
    remaining = float(amount)
    order = sorted(range(counts.size), key=lambda i: (abs(i - index), i))
    for i in order:
        if remaining <= 0:
            break
        taken = min(counts[i], remaining)
        counts[i] -= taken
        remaining -= taken
    return counts


SPIKE_SHARE = 0.05   # a histogram bin holding more than this share of the mass is a spike (a smooth
                     # distribution spreads over 2048 bins; one repeated value, e.g. a background pixel, does not)


class EntropyObserver(_HistogramObserver):
    """T = argmin_T KL(P ‖ Q_T) over a 2048-bin histogram of |x|; range [−T, T] ∩ [min, max].

    The calibration of Migacz, "8-bit Inference with TensorRT" (GTC 2017): for each candidate
    i = L..bins (L = number of quantization levels for one sign: 2^(bits−1), or 2^bits when the
    data is one-sided and the scheme asymmetric), P is the first i bins with all outliers added to
    bin i−1, Q quantizes the first i bins (without outliers) into L levels and expands them back;
    the chosen threshold is the right edge of bin i, T = i·amax/bins.

    Spikes are left out of the search, wherever they sit. A spike is one value repeated so often
    that a single bin holds more than SPIKE_SHARE of the mass: exact zeros after a ReLU, or the
    background pixel of standardized images, (0 − 0.1307)/0.3081 = −0.424 on MNIST. It would
    dominate every KL score and pull the threshold onto itself, clipping everything brighter.
    So its mass is removed from the |x| histogram and the threshold must keep it inside the
    range (T ≥ |spike|); exact zeros are removed even when fewer (zero is on every grid, so they
    cost nothing). (NVIDIA's pytorch-quantization copies bin 1's count into bin 0 instead, which
    handles a spike at 0 only and fails on data with gaps, e.g. pixels k/16.) Candidates never
    clip more than half of the remaining mass, and among equally good candidates the widest wins.
    """

    def __init__(self, bins: int = 2048, **kwargs):
        super().__init__(bins=bins, **kwargs)
        self.zero_count = 0

    def reset(self) -> None:
        super().reset()
        self.zero_count = 0

    def observe(self, x: np.ndarray) -> np.ndarray:
        batch = self._check_batch(x)
        if batch is not None:
            self.zero_count += int(np.count_nonzero(batch == 0))
        return super().observe(x)

    def state(self, num_channels: int | None = None) -> dict:
        return {**super().state(num_channels), "zero_count": np.array(self.zero_count, dtype=np.int64)}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.zero_count = int(state["zero_count"])

    def _spikes(self) -> list:
        """(position, mass) of every bin holding more than SPIKE_SHARE of the (nonzero) mass, at the bin centre."""
        histogram = self.histogram
        counts = histogram.counts
        if self.zero_count and histogram.lo <= 0 <= histogram.hi:
            counts = _take_mass(counts, int(histogram._bin_index(np.array([0.0]))[0]), self.zero_count)
        total = counts.sum()
        if total <= 0:
            return []
        edges = histogram.edges
        return [((edges[i] + edges[i + 1]) / 2, counts[i]) for i in np.flatnonzero(counts > SPIKE_SHARE * total)]

    def _levels(self) -> int:
        one_sided = self.min_val >= 0 or self.max_val <= 0
        qmin, qmax = integer_range(self.bits, self.signed, self.narrow_range)
        codes = qmax - qmin + 1
        return codes if (one_sided and not self.symmetric) else codes // 2

    def _clip_range(self):
        abs_counts, amax = self.histogram.abs_histogram()
        levels, bins = self._levels(), self.histogram.bins
        abs_counts = _take_mass(abs_counts, 0, self.zero_count)
        lowest = 0                                          # the threshold keeps every spike inside the range
        for position, mass in ([] if amax == 0 else self._spikes()):
            index = min(int(abs(position) / amax * bins), bins - 1)
            abs_counts = _take_mass(abs_counts, index, mass)
            lowest = max(lowest, index + 1)
        if amax == 0 or levels >= bins or abs_counts.sum() <= 0:
            self.threshold = amax
        else:
            # the KL score cannot see clipping error (outliers are folded into the last kept bin), so a
            # candidate that keeps one spike of discrete data (pixels k/16) scores a perfect 0: never clip
            # more than half of the (nonzero) mass, and let ties go to the widest range
            cumulative = np.cumsum(abs_counts)
            first = max(levels, lowest, int(np.searchsorted(cumulative, 0.5 * cumulative[-1])) + 1)
            candidates = np.arange(first, bins + 1)
            divergences = np.array([_kl_divergence_of_clipping(abs_counts, i, levels) for i in candidates])
            best = np.flatnonzero(divergences <= divergences.min() + 1e-12)[-1]
            self.threshold = int(candidates[best]) * amax / bins
        return max(self.min_val, np.float32(-self.threshold)), min(self.max_val, np.float32(self.threshold))


class PerChannelObservers:
    """One per-tensor-only observer (e.g. MSE, entropy) for each slice along `axis`; their QParams stacked
    per channel. num_channels, when known, creates them at once (so state() has its shape before any data)."""

    def __init__(self, name: str, axis: int, bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                 narrow_range: bool = False, num_channels: int | None = None, **kwargs):
        self.options = dict(bits=bits, symmetric=symmetric, signed=signed, narrow_range=narrow_range, **kwargs)
        _observer_class(name)(**self.options)                  # checks the options once
        self.name, self.axis, self.num_channels = name, axis, num_channels
        self.bits, self.narrow_range = bits, narrow_range
        self.signed = symmetric if signed is None else signed
        self.reset()

    def reset(self) -> None:
        self._channel_axis = None
        self.observers = None if self.num_channels is None else \
            [_observer_class(self.name)(**self.options) for _ in range(self.num_channels)]

    @property
    def has_data(self) -> bool:
        return self.observers is not None and all(o.has_data for o in self.observers)

    def observe(self, x: np.ndarray) -> np.ndarray:
        array = np.asarray(x)
        if not -array.ndim <= self.axis < array.ndim:
            raise ValueError(f"per-channel {self.name} observer: axis={self.axis} is out of range for input of "
                             f"shape {array.shape}")
        self._channel_axis = self.axis % array.ndim
        rows = np.moveaxis(array, self._channel_axis, 0)
        if self.observers is None:
            self.observers = [_observer_class(self.name)(**self.options) for _ in rows]
        elif len(rows) != len(self.observers):
            raise ValueError(f"per-channel {self.name} observer expects {len(self.observers)} channels along axis "
                             f"{self.axis}, got shape {array.shape}")
        for observer, row in zip(self.observers, rows):
            observer.observe(row)
        return x

    __call__ = observe

    def state(self, num_channels: int | None = None) -> dict:
        """Each per-channel observer's state, stacked along a leading channel axis."""
        if self.observers is None:
            self.observers = [_observer_class(self.name)(**self.options) for _ in range(int(num_channels))]
        states = [o.state() for o in self.observers]
        return {key: np.stack([st[key] for st in states]) for key in states[0]}

    def load_state(self, state: dict) -> None:
        self.observers = [_observer_class(self.name)(**self.options) for _ in range(len(state["min_val"]))]
        for i, observer in enumerate(self.observers):
            observer.load_state({key: value[i] for key, value in state.items()})
        self._channel_axis = self.axis

    def calculate_qparams(self) -> QParams:
        if not self.has_data:
            raise RuntimeError(f"per-channel {self.name} observer has observed no data; "
                               "call observe(x) before calculate_qparams()")
        per_slice = [o.calculate_qparams() for o in self.observers]
        return QParams(np.array([q.scale for q in per_slice], dtype=np.float32),
                       np.array([q.zero_point for q in per_slice], dtype=np.int64),
                       self.bits, self.signed, self._channel_axis, self.narrow_range)


OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}


def _observer_class(name: str) -> type:
    if name not in OBSERVERS:
        raise ValueError(f"unknown observer {name!r}; known observers: {', '.join(sorted(OBSERVERS))}")
    return OBSERVERS[name]


def make_observer(name: str, axis: int | None = None, num_channels: int | None = None, **kwargs):
    """OBSERVERS[name](axis=axis, **kwargs), e.g. make_observer("minmax", bits=4, symmetric=True, axis=0);
    for an observer that is per-tensor only, a PerChannelObservers of it when an axis is given."""
    cls = _observer_class(name)
    if axis is not None and cls.per_tensor_only:
        return PerChannelObservers(name, axis, num_channels=num_channels, **kwargs)
    return cls(axis=axis, **kwargs)
