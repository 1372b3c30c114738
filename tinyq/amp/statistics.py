"""Where gradients fall in a format's range: underflow to zero, subnormals, histograms of log2|g|.

Round-to-nearest-even on a format with smallest subnormal q = 2^(emin - m) and smallest
normal 2^emin sends a nonzero g to

    zero        |g| <= q/2                    (the tie q/2 goes to the even neighbour 0)
    subnormal   q/2 < |g| < 2^emin - q/2      (at 2^emin - q/2 the tie goes up to 2^emin, even)
    normal      otherwise (or overflow, counted separately: |round(g)| > max)

so both fractions are thresholds on |g|: no rounding is needed to count them.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tinyq.formats.floats import FloatFormat, check_format


def underflow_fractions(grad: np.ndarray, fmt: FloatFormat) -> dict:
    """{zero: #(g != 0, round(g) = 0) / #(g != 0),  subnormal: #(0 < |round(g)| < 2^emin) / #(g != 0),  nonzero}."""
    fmt = check_format(fmt, "underflow_fractions")
    ### BEGIN SOLUTION 12.4
    magnitude = np.abs(np.asarray(grad, dtype=np.float64))
    nonzero = int(np.count_nonzero(magnitude))
    half_step = fmt.min_subnormal / 2
    to_zero = int(np.count_nonzero((magnitude > 0) & (magnitude <= half_step)))
    subnormal = int(np.count_nonzero((magnitude > half_step) & (magnitude < fmt.min_normal - half_step)))
    denominator = max(nonzero, 1)
    return {"zero": to_zero / denominator, "subnormal": subnormal / denominator, "nonzero": nonzero}
    ### END SOLUTION


def log2_bins(low: int = -40, high: int = 20) -> np.ndarray:
    """Bin edges low, low+1, ..., high of log2|g| (one bin per binade)."""
    return np.arange(low, high + 1, dtype=np.float64)


def log2_histogram(grad: np.ndarray, bins: np.ndarray | None = None) -> np.ndarray:
    """counts[i] = #{g != 0 : bins[i] <= log2|g| < bins[i+1]}; values outside land in the end bins."""
    bins = log2_bins() if bins is None else np.asarray(bins, dtype=np.float64)
    magnitude = np.abs(np.asarray(grad, dtype=np.float64)).ravel()
    magnitude = magnitude[(magnitude > 0) & np.isfinite(magnitude)]
    exponents = np.clip(np.log2(magnitude), bins[0], np.nextafter(bins[-1], -np.inf))
    return np.histogram(exponents, bins=bins)[0]


def format_range(fmt: FloatFormat) -> dict:
    """log2 of the format's smallest subnormal, smallest normal and largest value (for plots)."""
    return {"min_subnormal": float(np.log2(fmt.min_subnormal)), "min_normal": float(np.log2(fmt.min_normal)),
            "max": float(np.log2(fmt.max))}


class GradientStatistics:
    """Per layer and per kind of gradient: underflow counts and a log2|g| histogram, summed over calls.

    `autocast(..., statistics=stats)` calls record(layer, kind, g, fmt) on each gradient just before
    it is rounded to the low-precision format (kind: "output" = dL/dy of the op, "weight", "input").
    """

    def __init__(self, bins: np.ndarray | None = None):
        self.bins = log2_bins() if bins is None else np.asarray(bins, dtype=np.float64)
        self.entries: OrderedDict[tuple[str, str], dict] = OrderedDict()

    def record(self, layer: str, kind: str, grad: np.ndarray, fmt: FloatFormat) -> None:
        fractions = underflow_fractions(grad, fmt)
        entry = self.entries.setdefault((layer, kind), {"nonzero": 0, "zero": 0.0, "subnormal": 0.0, "size": 0,
                                                        "histogram": np.zeros(len(self.bins) - 1, np.int64),
                                                        "format": fmt.name})
        entry["zero"] += fractions["zero"] * fractions["nonzero"]          # counts, divided in table()
        entry["subnormal"] += fractions["subnormal"] * fractions["nonzero"]
        entry["nonzero"] += fractions["nonzero"]
        entry["size"] += int(np.size(grad))
        entry["histogram"] += log2_histogram(grad, self.bins)

    def table(self) -> list[dict]:
        """One record per (layer, kind): underflow_to_zero and subnormal as fractions of nonzero elements."""
        rows = []
        for (layer, kind), e in self.entries.items():
            n = max(e["nonzero"], 1)
            rows.append({"layer": layer, "gradient": kind, "format": e["format"], "elements": e["size"],
                         "nonzero": e["nonzero"], "underflow_to_zero": round(e["zero"]) / n,
                         "subnormal": round(e["subnormal"]) / n})
        return rows

    def histogram(self, layer: str, kind: str = "output") -> np.ndarray:
        return self.entries[(layer, kind)]["histogram"]

    def clear(self) -> None:
        self.entries.clear()
