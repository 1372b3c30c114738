"""Weight sharing (Han et al. 2016, Deep Compression): per layer, w_i = c[idx_i] with a k-entry codebook c.

Conventions, stated once:
- k-means runs on each layer's non-zero weights alone (pruned zeros stay exact zeros), starting
  from k centroids spaced linearly between the smallest and the largest weight (the linear
  initialization the paper found best: it keeps the few large weights represented).
- Sharing a layer's `weight` replaces the Parameter by `weight_codebook` (a (k,) Parameter, trained)
  and the buffer `weight_indices` (int32, the weight's shape; index k marks a pruned weight, exactly 0).
  `module.weight` becomes computed: c[idx], by the Function `SharedWeight`, whose backward sums
  the weight gradient per cluster: dL/dc_j = Σ_{i: idx_i = j} dL/dw_i.
- Sizes in bits: indices at ceil(log2 k) bits each, or Huffman-coded (code lengths computed from the
  index counts), plus k 32-bit centroids; pruned positions are paid for by the sparse format's index
  (CSR or bitmask, whichever is smaller: tinyq.kernels.sparse).
"""
from __future__ import annotations

import heapq

import numpy as np

from tinyq.function import Function
from tinyq.kernels import sparse
from tinyq.nn import Module, Parameter
from tinyq.prune import is_pruned, prunable, remove

_SHARED_CLASSES: dict = {}


# ---------------------------------------------------------------------------- k-means on one layer
def linear_init(values: np.ndarray, k: int) -> np.ndarray:
    """c_j = min + j (max − min)/(k − 1), j = 0..k−1  (k = 1: the midpoint)."""
    ### BEGIN SOLUTION 10.1
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if k == 1:
        return np.array([(low + high) / 2])
    return low + np.arange(k) * (high - low) / (k - 1)
    ### END SOLUTION


def assign(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """idx_i = argmin_j |w_i − c_j|  (ties go to the smaller j)."""
    ### BEGIN SOLUTION 10.2
    values = np.asarray(values, dtype=np.float64).ravel()
    distances = np.abs(values[:, None] - np.asarray(codebook, dtype=np.float64)[None, :])
    return np.argmin(distances, axis=1).astype(np.int32)
    ### END SOLUTION


def kmeans(values: np.ndarray, k: int, iterations: int = 10_000) -> tuple:
    """Lloyd's algorithm in 1-D from linear_init: assign each value to its nearest centroid, move each centroid
    to its cluster's mean (an empty cluster keeps its centroid), until no centroid moves (or `iterations`).

    In 1-D the clusters of sorted centroids are intervals of the sorted values split at the midpoints
    (c_j + c_{j+1})/2, so one Lloyd step is a searchsorted and a difference of cumulative sums.
    Returns (codebook (k,) float64, ascending; indices int32 = assign(values, codebook)).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k-means needs k a positive int, got {k!r}")
    if k > values.size:
        raise ValueError(f"k-means with k={k} clusters needs at least k weights, got {values.size}")
    ordered = np.sort(values)
    prefix = np.concatenate([[0.0], np.cumsum(ordered)])
    codebook = np.sort(linear_init(values, k))
    for _ in range(iterations):
        # cluster j = ordered[bounds[j]:bounds[j+1]]; a value on a midpoint joins the lower centroid (as in assign)
        bounds = np.concatenate([[0], np.searchsorted(ordered, (codebook[1:] + codebook[:-1]) / 2, side="right"),
                                 [ordered.size]])
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        updated = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), codebook))
        if np.array_equal(updated, codebook):
            break
        codebook = updated
    return codebook, assign(values, codebook)


def centroid_gradient(weight_grad: np.ndarray, indices: np.ndarray, k: int) -> np.ndarray:
    """dL/dc_j = Σ_{i: idx_i = j} dL/dw_i  for j = 0..k−1 (index k, a pruned weight, gets nothing)."""
    ### BEGIN SOLUTION 10.3
    flat = np.asarray(indices).ravel()
    grad = np.asarray(weight_grad).ravel()
    kept = flat < k
    return np.bincount(flat[kept], weights=grad[kept].astype(np.float64), minlength=k)[:k]
    ### END SOLUTION


class SharedWeight(Function):
    """forward: w = [c, 0][idx];  backward: dL/dc = centroid_gradient(dL/dw, idx, k)."""

    @staticmethod
    def forward(ctx, codebook, *, indices):
        ctx.indices, ctx.k = indices, codebook.shape[0]
        return np.append(codebook, np.zeros(1, dtype=codebook.dtype))[indices]

    @staticmethod
    def backward(ctx, grad):
        return centroid_gradient(grad, ctx.indices, ctx.k).astype(grad.dtype)


# ---------------------------------------------------------------------------- modules
def _shared(name):
    def weight(self):
        return SharedWeight.apply(self._parameters[name + "_codebook"], indices=getattr(self, name + "_indices"))
    return property(weight, doc=f"{name} = {name}_codebook[{name}_indices] (shared)")


def _shared_class(cls, name: str) -> type:
    key = (cls, name)
    if key not in _SHARED_CLASSES:
        _SHARED_CLASSES[key] = type(cls.__name__, (cls,), {name: _shared(name), "_shared_names": (name,),
                                                           "_unshared_class": cls, "__module__": cls.__module__})
    return _SHARED_CLASSES[key]


def is_shared(module: Module, name: str = "weight") -> bool:
    return name in getattr(type(module), "_shared_names", ())


def share_layer(module: Module, k: int, name: str = "weight", iterations: int = 10_000) -> Module:
    """k-means the non-zero entries of module.<name>; the layer then computes with codebook[indices]."""
    if is_shared(module, name):
        raise ValueError(f"{type(module).__name__}.{name} is already shared")
    if is_pruned(module, name):
        remove(module, name)                       # the zeros are kept as index k
    param = module._parameters.get(name)
    if param is None:
        raise KeyError(f"{type(module).__name__} has no parameter {name!r}")
    weight = param.data
    nonzero = weight != 0
    codebook, cluster = kmeans(weight[nonzero], k, iterations)
    indices = np.full(weight.shape, k, dtype=np.int32)
    indices[nonzero] = cluster
    delattr(module, name)
    module.__class__ = _shared_class(type(module), name)
    setattr(module, name + "_codebook", Parameter(codebook.astype(weight.dtype)))
    module.register_buffer(name + "_indices", indices)
    return module


def share_weights(model: Module, k: int, names=None, iterations: int = 10_000) -> Module:
    """share_layer on every Linear/Conv2d weight (or the named ones), each with its own k-entry codebook."""
    for module, name in prunable(model, names).values():
        share_layer(module, k, name, iterations)
    return model


def shared_layers(model: Module) -> dict:
    """{"0.weight": (codebook, indices)} for every shared weight."""
    return {(f"{p}.{n}" if p else n): (m._parameters[n + "_codebook"].data, getattr(m, n + "_indices"))
            for p, m in model.named_modules() for n in getattr(type(m), "_shared_names", ())}


# ---------------------------------------------------------------------------- sizes
def huffman_code_lengths(counts) -> np.ndarray:
    """Code length of each symbol in a Huffman code for these counts (0 for a symbol that never occurs;
    1 when only one symbol occurs). Merging the two lightest trees adds one bit to all their symbols."""
    counts = np.asarray(counts)
    ### BEGIN SOLUTION 10.4
    lengths = np.zeros(len(counts), dtype=np.int64)
    heap = [(int(c), j, [j]) for j, c in enumerate(counts) if c > 0]
    if len(heap) == 1:
        lengths[heap[0][2]] = 1
        return lengths
    heapq.heapify(heap)
    order = len(counts)
    while len(heap) > 1:
        count_a, _, symbols_a = heapq.heappop(heap)
        count_b, _, symbols_b = heapq.heappop(heap)
        lengths[symbols_a + symbols_b] += 1
        heapq.heappush(heap, (count_a + count_b, order, symbols_a + symbols_b))
        order += 1
    return lengths
    ### END SOLUTION


def layer_bits(weight: np.ndarray, codebook: np.ndarray | None = None, indices: np.ndarray | None = None,
               value_bits: int = 32) -> dict:
    """Bits to store one weight tensor: dense, sparse (best of CSR/bitmask) and, when shared,
    with fixed-width indices and with Huffman-coded indices (+ k·value_bits codebook + 8 bits per code length)."""
    matrix = np.asarray(weight).reshape(len(weight), -1)
    nnz = int(np.count_nonzero(matrix))
    dense = matrix.size * value_bits
    positions = min(sparse.csr_bits(sparse.csr_encode(matrix), 0), matrix.size) if nnz < matrix.size else 0
    record = {"size": int(matrix.size), "nonzero": nnz, "dense_bits": dense,
              "sparse_bits": positions + nnz * value_bits}
    if codebook is not None:
        k = len(codebook)
        kept = np.asarray(indices).ravel()
        kept = kept[kept < k]
        table = k * value_bits
        record["shared_bits"] = positions + nnz * sparse.index_bits(k) + table
        lengths = huffman_code_lengths(np.bincount(kept, minlength=k))
        record["huffman_bits"] = positions + int(np.sum(np.bincount(kept, minlength=k) * lengths)) + table + 8 * k
    return record


def storage_bits(model: Module, value_bits: int = 32) -> list:
    """Per parameter, the bits actually stored: shared weights with Huffman-coded (or fixed-width, if
    smaller) indices, other weights dense or sparse (whichever is smaller), every other parameter and
    float buffer (BatchNorm statistics) dense float32.
    value_bits: bits per stored weight value or centroid (32 for float32, b for a b-bit quantized model)."""
    records, shared = [], shared_layers(model)
    weights = {key: module for key, (module, _) in prunable(model).items()}
    for key, (codebook, indices) in shared.items():
        record = layer_bits(np.append(codebook, 0)[indices], codebook, indices, value_bits)
        records.append({"parameter": key, **record, "stored_bits": min(record["shared_bits"],
                                                                       record["huffman_bits"])})
    for key, module in weights.items():
        if key in shared:
            continue
        record = layer_bits(module.weight.data, value_bits=value_bits)
        records.append({"parameter": key, **record, "stored_bits": min(record["dense_bits"], record["sparse_bits"])})
    for key, param in model.named_parameters():
        if key.rsplit(".", 1)[-1] in ("weight_orig", "weight_codebook") or key in weights:
            continue
        records.append({"parameter": key, "size": int(param.size), "nonzero": int(np.count_nonzero(param.data)),
                        "dense_bits": int(param.size) * 32, "stored_bits": int(param.size) * 32})
    for key, array in model.named_buffers():      # BatchNorm running statistics (masks/indices counted above)
        array = np.asarray(array)
        if array.dtype.kind == "f" and not key.endswith("_mask"):
            records.append({"parameter": key, "size": int(array.size), "nonzero": int(np.count_nonzero(array)),
                            "dense_bits": int(array.size) * 32, "stored_bits": int(array.size) * 32})
    return records
