"""Sparse storage: CSR and bitmask round-trip exactly, sizes by hand, the numba CSR matmul equals its reference."""
import numpy as np
import pytest

from tinyq.kernels import sparse


def _sparse_matrix(rng, shape, density, dtype=np.float32):
    dense = rng.normal(size=shape).astype(dtype)
    dense[rng.random(shape) >= density] = 0
    return dense


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 33), (3, 200)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_csr_and_bitmask_round_trip_exactly(shape, density):
    dense = _sparse_matrix(np.random.default_rng(0), shape, density)
    for encode, decode in ((sparse.csr_encode, sparse.csr_decode), (sparse.bitmask_encode, sparse.bitmask_decode)):
        back = decode(encode(dense))
        assert back.dtype == dense.dtype
        np.testing.assert_array_equal(back, dense)


@pytest.mark.exercise("9.4")
def test_csr_encode_by_hand():
    dense = np.array([[0, 2.0, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, -3.0]])
    csr = sparse.csr_encode(dense)
    np.testing.assert_array_equal(csr.values, [2.0, 1.0, -3.0])
    np.testing.assert_array_equal(csr.col_index, [1, 0, 3])
    np.testing.assert_array_equal(csr.row_ptr, [0, 1, 1, 3])
    assert tuple(csr.shape) == (3, 4)
    empty = sparse.csr_encode(np.zeros((2, 3)))
    assert len(empty.values) == 0 and list(empty.row_ptr) == [0, 0, 0]


def test_sizes_by_hand():
    dense = np.array([[0, 2.0, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, -3.0]], dtype=np.float32)
    # 3 non-zeros × (32 value bits + 2 column bits) + 4 row pointers × 2 bits (values 0..3)
    assert sparse.csr_bits(sparse.csr_encode(dense)) == 3 * 34 + 4 * 2
    assert sparse.bitmask_bits(sparse.bitmask_encode(dense)) == 12 + 3 * 32
    assert sparse.dense_bits(dense.shape) == 12 * 32
    assert sparse.stored_bits(sparse.csr_encode(dense)) == 3 * 32 + 3 * 32 + 4 * 32
    assert sparse.best_format_bits(dense)[0] == "bitmask"
    assert sparse.index_bits(1) == 1 and sparse.index_bits(16) == 4 and sparse.index_bits(17) == 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_numba_csr_matmul_equals_reference_bit_for_bit(dtype, density):
    rng = np.random.default_rng(1)
    a = _sparse_matrix(rng, (37, 53), density, dtype)
    b = rng.normal(size=(53, 11)).astype(dtype)
    csr = sparse.csr_encode(a)
    reference = sparse.csr_matmul_reference(csr.values, csr.col_index, csr.row_ptr, b)
    np.testing.assert_array_equal(sparse.csr_matmul(csr.values, csr.col_index, csr.row_ptr, b), reference)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(reference, exact, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        sparse.csr_encode(np.zeros(3))
    csr = sparse.csr_encode(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="column indices"):
        sparse.csr_matmul(csr.values, csr.col_index, csr.row_ptr, np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        sparse.csr_matmul(csr.values, csr.col_index, csr.row_ptr, np.zeros((3, 2)))
