"""Weight sharing: ≤ k values per layer, per-cluster centroid gradient, Huffman code lengths, sizes, bad input."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import functional as F
from tinyq import models, optim, prune, sharing


def _mlp(seed=0):
    return models.mlp((64, 32, 10), rng=np.random.default_rng(seed))


def _batch(seed=1, n=16):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 64)).astype(np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("k", [1, 2, 16])
def test_at_most_k_distinct_values_per_layer_before_and_after_fine_tuning(k):
    model = sharing.share_weights(_mlp(), k)
    for module, _ in prune.prunable(model).values():
        assert len(np.unique(module.weight.data)) <= k
    opt = optim.SGD(list(model.parameters()), lr=0.05, momentum=0.9)
    x, y = _batch()
    for _ in range(5):
        loss = F.cross_entropy(model(tq.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for module, _ in prune.prunable(model).values():
        assert len(np.unique(module.weight.data)) <= k


def test_centroid_gradient_is_the_per_cluster_sum_of_weight_gradients():
    model, (x, y) = _mlp(1), _batch()
    dense = _mlp(1)
    sharing.share_weights(model, 8)
    layer = model[1]
    dense[1].weight.data = layer.weight.data.copy()      # the same effective weights, as a plain Parameter
    dense[3].weight.data = model[3].weight.data.copy()
    for m in (model, dense):
        F.cross_entropy(m(tq.tensor(x)), y).backward()
    indices = layer.weight_indices
    expected = [float(np.sum(dense[1].weight.grad.astype(np.float64)[indices == j])) for j in range(8)]
    np.testing.assert_allclose(layer.weight_codebook.grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.exercise("10.3")
def test_centroid_gradient_by_hand():
    grad = np.array([[1.0, 2.0], [3.0, 4.0]])
    indices = np.array([[0, 2], [0, 3]])           # index 3 = k: a pruned weight, no centroid
    np.testing.assert_allclose(sharing.centroid_gradient(grad, indices, 3), [4.0, 0.0, 2.0])


@pytest.mark.exercise("10.1")
def test_linear_init_by_hand():
    np.testing.assert_allclose(sharing.linear_init(np.array([-1.0, 0.3, 2.0]), 4), [-1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(sharing.linear_init(np.array([1.0, 3.0]), 1), [2.0])


@pytest.mark.exercise("10.2")
def test_assign_to_the_nearest_centroid():
    np.testing.assert_array_equal(sharing.assign(np.array([-0.9, 0.4, 0.6, 5.0, 0.5]), np.array([-1.0, 0.0, 1.0])),
                                  [0, 1, 2, 2, 1])


def test_kmeans_converges_to_a_fixed_point():
    values = np.random.default_rng(2).normal(size=500)
    codebook, indices = sharing.kmeans(values, 5)
    for j in range(5):
        if np.any(indices == j):
            assert codebook[j] == pytest.approx(values[indices == j].mean())
    np.testing.assert_array_equal(sharing.assign(values, codebook), indices)


@pytest.mark.exercise("10.4")
def test_huffman_code_lengths_by_hand():
    # counts 5, 2, 1, 1: merge 1+1 → 2, then 2+2 → 4, then 4+5: lengths 1, 2, 3, 3
    np.testing.assert_array_equal(sharing.huffman_code_lengths([5, 2, 1, 1]), [1, 2, 3, 3])
    np.testing.assert_array_equal(sharing.huffman_code_lengths([0, 7, 0]), [0, 1, 0])
    np.testing.assert_array_equal(sharing.huffman_code_lengths([1, 1, 1, 1]), [2, 2, 2, 2])


def test_huffman_lengths_satisfy_kraft_and_beat_entropy_by_less_than_one_bit():
    counts = np.random.default_rng(3).integers(0, 50, size=16)
    lengths = sharing.huffman_code_lengths(counts)
    used = counts > 0
    assert np.sum(2.0 ** -lengths[used]) == pytest.approx(1.0)
    p = counts[used] / counts.sum()
    entropy = -np.sum(p * np.log2(p))
    average = np.sum(p * lengths[used])
    assert entropy <= average < entropy + 1


def test_sharing_a_pruned_model_keeps_the_zeros_and_counts_them_once():
    model = _mlp(4)
    masks = prune.global_magnitude(model, 0.9)
    sharing.share_weights(model, 16)
    for key, (module, _) in prune.prunable(model).items():
        assert np.all(module.weight.data[masks[key] == 0] == 0)
        assert len(np.unique(module.weight.data[masks[key] == 1])) <= 16
    records = {r["parameter"]: r for r in sharing.storage_bits(model)}
    w = records["1.weight"]
    assert w["nonzero"] == np.sum(masks["1.weight"])
    assert w["huffman_bits"] - 8 * 16 <= w["shared_bits"]        # Huffman never needs more than 4 bits/index
    assert w["stored_bits"] < w["sparse_bits"] < w["dense_bits"]


def test_state_dict_holds_codebook_and_indices():
    model = sharing.share_weights(_mlp(5), 4)
    state = model.state_dict()
    assert state["1.weight_codebook"].shape == (4,) and state["1.weight_indices"].dtype == np.int32
    other = sharing.share_weights(_mlp(6), 4)
    other.load_state_dict(state)
    x, _ = _batch()
    np.testing.assert_array_equal(other(tq.tensor(x)).data, model(tq.tensor(x)).data)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least k"):
        sharing.kmeans(np.ones(3), 4)
    with pytest.raises(ValueError, match="positive int"):
        sharing.kmeans(np.ones(3), 0)
    with pytest.raises(KeyError, match="no such parameter"):
        sharing.share_weights(_mlp(), 4, names=["9.weight"])
    model = sharing.share_weights(_mlp(), 4)
    with pytest.raises(ValueError, match="already shared"):
        sharing.share_layer(model[1], 4)


def test_storage_of_a_dense_model_is_32_bits_per_parameter_and_statistic():
    model = models.convnet8(width=4, rng=np.random.default_rng(7))
    statistics = sum(np.size(a) for k, a in model.named_buffers() if k.endswith(("running_mean", "running_var")))
    total = sum(r["stored_bits"] for r in sharing.storage_bits(model))
    assert total == 32 * (model.num_parameters() + statistics)
