"""Integer kernels: each numba kernel bit-identical to its reference; references against Python-integer /
Fraction oracles; edge cases (all qmin, all qmax, zero points at the ends, K = 1, K at the float32-exact
limit); bad input raises."""
from fractions import Fraction

import numpy as np
import pytest

from tinyq.kernels.accumulate import (
    accumulate_gemm,
    accumulate_gemm_reference,
    wrap_to_bits,
)
from tinyq.kernels.int_gemm import (
    FLOAT32_EXACT_LIMIT,
    exact_block_size,
    int_gemm,
    int_gemm_blas,
    int_gemm_reference,
    zero_point_correction,
)
from tinyq.kernels.int_ops import add_bias_int32, int_im2col, int_max_pool2d
from tinyq.kernels.requant import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier,
    requantize,
    requantize_reference,
    rounding_divide_by_pot_reference,
    saturating_rounding_doubling_high_mul_reference,
)

GEMMS = [int_gemm, int_gemm_blas]


def python_gemm(a, b, z_a, z_b):
    """Σ_k (a − z_a)(b − z_b) with Python integers, the slowest and surest oracle."""
    z_b = np.broadcast_to(np.asarray(z_b), (b.shape[1],))
    return np.array([[sum((int(a[i, k]) - z_a) * (int(b[k, j]) - int(z_b[j])) for k in range(a.shape[1]))
                      for j in range(b.shape[1])] for i in range(a.shape[0])], dtype=np.int64)


def round_half_up(value: Fraction) -> int:
    """floor(value + 1/2): ties toward +inf."""
    value += Fraction(1, 2)
    return value.numerator // value.denominator


def round_half_away(value: Fraction) -> int:
    floor = value.numerator // value.denominator
    rest = value - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and value > 0):
        return floor + 1
    return floor


# ---------------------------------------------------------------- integer GEMM
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gemm", GEMMS)
def test_int_gemm_matches_python_integers_random(seed, gemm):
    rng = np.random.default_rng(seed)
    m, k, n = rng.integers(1, 9, size=3)
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    z_a, z_b = int(rng.integers(0, 256)), rng.integers(-128, 128, n)
    expected = python_gemm(a, b, z_a, z_b)
    assert np.array_equal(int_gemm_reference(a, b, z_a, z_b), expected)
    result = gemm(a, b, z_a, z_b)
    assert result.dtype == np.int32 and np.array_equal(result, expected)


@pytest.mark.parametrize("gemm", GEMMS)
@pytest.mark.parametrize("a_fill, b_fill, z_a, z_b", [
    (0, -128, 0, 127), (255, 127, 255, -128), (255, -128, 0, 127), (0, 127, 255, -128),   # qmin/qmax, zps at ends
    (128, -127, 128, 0), (7, 0, 7, 0)])
@pytest.mark.parametrize("k", [1, 3, 64, 515, 1041])       # 515 > 514 and 1041 > 1040: past one fp32 block
def test_int_gemm_edge_values(gemm, a_fill, b_fill, z_a, z_b, k):
    a = np.full((3, k), a_fill, dtype=np.uint8)
    b = np.full((k, 2), b_fill, dtype=np.int8)
    expected = np.full((3, 2), k * (a_fill - z_a) * (b_fill - z_b), dtype=np.int64)   # by hand
    assert np.array_equal(int_gemm_reference(a, b, z_a, z_b), expected)
    assert np.array_equal(gemm(a, b, z_a, z_b), expected)


def test_int8_times_int8_and_per_column_zero_points():
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (6, 37)).astype(np.int8)
    b = rng.integers(-128, 128, (37, 5)).astype(np.int8)
    z_b = np.array([-128, 0, 127, 3, -4])
    for gemm in GEMMS + [int_gemm_reference]:
        assert np.array_equal(gemm(a, b, -128, z_b), python_gemm(a, b, -128, z_b))


@pytest.mark.exercise("8.3")
def test_exact_block_size_by_hand():
    assert exact_block_size(127, 127) == 1040          # 1040·127² = 16,774,160 ≤ 2^24 < 1041·127²
    assert exact_block_size(255, 128) == 514           # uint8 activations × int8 weights
    assert exact_block_size(1, 1) == FLOAT32_EXACT_LIMIT
    for x, y in [(127, 127), (255, 128), (15, 7), (3, 200)]:
        block = exact_block_size(x, y)
        assert block * x * y <= 2**24 < (block + 1) * x * y


@pytest.mark.exercise("8.3")
@pytest.mark.parametrize("k", [1040, 1041, 2100])
def test_blas_path_is_exact_above_the_float32_limit(k):
    """All-127 operands: one float32 dot product is exact up to K = 1040 and off by one at 1041
    (1041·127² = 16,790,289 is odd and above 2^24); the blocked path is exact at every K."""
    a = np.full((2, k), 127, dtype=np.int8)
    b = np.full((k, 3), 127, dtype=np.int8)
    exact = k * 127 * 127
    assert np.all(int_gemm_blas(a, b) == exact)
    single_block = int_gemm_blas(a, b, block=k)
    if k <= 1040:
        assert np.all(single_block == exact)
    elif k == 1041:
        assert np.any(single_block != exact)          # measured: one float32 dot product misses by one


@pytest.mark.exercise("8.3")
def test_blas_path_uint8_grid_needs_blocks():
    """uint8 × int8 at K = 800 > 514: exact only with the derived block."""
    a = np.full((2, 800), 255, dtype=np.uint8)
    b = np.full((800, 2), -127, dtype=np.int8)
    b[1::2] = -128
    expected = python_gemm(a[:, :], b, 0, 0)
    assert np.array_equal(int_gemm_blas(a, b), expected)


@pytest.mark.exercise("8.2")
@pytest.mark.parametrize("seed", range(3))
def test_zero_point_correction_equals_centered_product(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (4, 9)).astype(np.int64)
    b = rng.integers(-128, 128, (9, 6)).astype(np.int64)
    z_a, z_b = int(rng.integers(0, 256)), rng.integers(-128, 128, 6)
    corrected = zero_point_correction(a @ b, a.sum(axis=1), b.sum(axis=0), 9, z_a, z_b)
    assert np.array_equal(corrected, python_gemm(a, b, z_a, z_b))
    scalar = zero_point_correction(a @ b, a.sum(axis=1), b.sum(axis=0), 9, z_a, -5)
    assert np.array_equal(scalar, python_gemm(a, b, z_a, -5))


@pytest.mark.exercise("8.2")
def test_int_gemm_uses_the_correction():
    a = np.array([[3, 200]], dtype=np.uint8)
    b = np.array([[-2], [5]], dtype=np.int8)
    assert int_gemm(a, b, 100, 1)[0, 0] == (3 - 100) * (-2 - 1) + (200 - 100) * (5 - 1)   # 291 + 400


@pytest.mark.parametrize("gemm", GEMMS + [int_gemm_reference])
def test_int_gemm_bad_input(gemm):
    a = np.zeros((2, 3), dtype=np.uint8)
    b = np.zeros((3, 4), dtype=np.int8)
    with pytest.raises(TypeError, match="integer codes"):
        gemm(a.astype(np.float32), b)
    with pytest.raises(TypeError, match="integer codes"):
        gemm(a.astype(np.int32), b)
    with pytest.raises(ValueError, match="same K"):
        gemm(a, b[:2])
    with pytest.raises(ValueError, match="a_zero_point inside the range of uint8"):
        gemm(a, b, 256, 0)
    with pytest.raises(ValueError, match="b_zero_point inside the range of int8"):
        gemm(a, b, 0, np.array([0, 0, 0, -129]))
    with pytest.raises(ValueError, match="b_zero_point of shape"):
        gemm(a, b, 0, np.zeros(3, dtype=np.int64))
    with pytest.raises(OverflowError, match="int32 accumulator"):
        gemm(np.full((1, 3), 30000, np.int16), np.full((3, 1), 30000, np.int16))


# ---------------------------------------------------------------- requantization
@pytest.mark.exercise("8.1")
@pytest.mark.parametrize("seed", range(3))
def test_high_mul_matches_fraction(seed):
    rng = np.random.default_rng(seed)
    values = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX, 1 << 30, -(1 << 30)]
    values += [int(v) for v in rng.integers(INT32_MIN, INT32_MAX, 40, endpoint=True)]
    for a in values:
        for b in values[:: 3]:
            expected = round_half_up(Fraction(a * b, 1 << 31))
            if a == b == INT32_MIN:
                expected = INT32_MAX                                  # the one saturating case
            assert saturating_rounding_doubling_high_mul_reference(a, b) == expected, (a, b)


@pytest.mark.exercise("8.1")
def test_high_mul_ties_by_hand():
    half = 1 << 30                                          # M0 = 2^30 means M0 / 2^31 = 1/2
    assert saturating_rounding_doubling_high_mul_reference(3, half) == 2      # 1.5 → 2
    assert saturating_rounding_doubling_high_mul_reference(-3, half) == -1    # −1.5 → −1 (ties toward +inf)
    assert saturating_rounding_doubling_high_mul_reference(5, half) == 3
    assert saturating_rounding_doubling_high_mul_reference(-5, half) == -2
    assert saturating_rounding_doubling_high_mul_reference(-7, half >> 1) == -2   # −1.75 → −2
    assert saturating_rounding_doubling_high_mul_reference(INT32_MIN, INT32_MIN) == INT32_MAX


def test_rounding_divide_by_pot_matches_fraction():
    for x in list(range(-40, 41)) + [INT32_MIN, INT32_MAX, 12345678, -12345678]:
        for exponent in (0, 1, 2, 3, 5, 31):
            assert rounding_divide_by_pot_reference(x, exponent) == round_half_away(Fraction(x, 1 << exponent))


@pytest.mark.parametrize("seed", range(3))
def test_requantize_kernel_bit_identical(seed):
    rng = np.random.default_rng(seed)
    acc = rng.integers(INT32_MIN, INT32_MAX, (40, 5), endpoint=True).astype(np.int32)
    acc[0] = [INT32_MIN, INT32_MAX, 0, -1, 1]
    acc[1] = [-3, 3, -5, 5, -7]                            # ties for M = 1/2 and 1/4
    multipliers = np.array([0.5, 0.25, 1e-4, 0.999999, 2.0**-20])
    m0, shift = quantize_multiplier(multipliers)
    for z, lo, hi in [(0, -128, 127), (-128, -128, 127), (127, -128, 127), (0, 0, 255), (3, 3, 255)]:
        expected = requantize_reference(acc, m0, shift, z, lo, hi)
        assert np.array_equal(requantize(acc, m0, shift, z, lo, hi), expected)
        assert np.array_equal(requantize(acc.T, m0, shift, z, lo, hi, axis=0), expected.T)
    m, s = quantize_multiplier(0.0123)
    assert np.array_equal(requantize(acc, m, s, 5, 0, 255), requantize_reference(acc, m, s, 5, 0, 255))


def test_requantize_is_round_of_the_real_product():
    """|requantize(acc) − round(acc·M)| ≤ 1 (two roundings); for M = 1/8 the two roundings by hand."""
    rng = np.random.default_rng(7)
    acc = rng.integers(-10**6, 10**6, 500).astype(np.int32)
    m0, shift = quantize_multiplier(0.00037)
    got = requantize(acc, m0, shift, 0, -(1 << 31), INT32_MAX).astype(np.int64)
    assert np.max(np.abs(got - np.rint(acc * 0.00037))) <= 1
    m0, shift = quantize_multiplier(0.125)
    got = requantize(acc, m0, shift, 0, -(1 << 31), INT32_MAX)
    # M = 1/8 = 2^30 · 2^-31 · 2^-2: high multiply halves (ties up), the shift divides by 4 (ties away)
    assert all(int(g) == round_half_away(Fraction(round_half_up(Fraction(int(x), 2)), 4)) for g, x in zip(got, acc))


def test_requantize_bad_input():
    acc = np.zeros(3, dtype=np.int32)
    m0, shift = quantize_multiplier(1.5)
    with pytest.raises(ValueError, match="M < 1"):
        requantize(acc, m0, shift, 0, 0, 255)
    with pytest.raises(TypeError, match="int32 accumulator"):
        requantize(acc.astype(np.float32), 1 << 30, 0, 0, 0, 255)
    with pytest.raises(TypeError, match="int32 accumulator"):
        requantize(acc.astype(np.int64), 1 << 30, 0, 0, 0, 255)
    with pytest.raises(ValueError, match="zero_point in"):
        requantize(acc, 1 << 30, 0, 256, 0, 255)
    with pytest.raises(ValueError, match="channels along axis"):
        requantize(acc, np.array([1 << 30] * 2), np.array([0, 0]), 0, 0, 255)
    with pytest.raises(ValueError, match=r"m0 in \[0, 2\^31\)"):
        requantize(acc, -1, 0, 0, 0, 255)


# ---------------------------------------------------------------- accumulator simulation
@pytest.mark.parametrize("bits", [16, 20, 24, 32])
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_accumulate_kernel_bit_identical(bits, overflow):
    rng = np.random.default_rng(bits)
    a = rng.integers(0, 256, (4, 300)).astype(np.uint8)
    b = rng.integers(-127, 128, (300, 3)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 3)
    ref, ref_count = accumulate_gemm_reference(a, b, 3, 0, bias, bits, overflow)
    got, count = accumulate_gemm(a, b, 3, 0, bias, bits, overflow)
    assert np.array_equal(got, ref) and count == ref_count
    if bits == 32:
        assert count == 0 and np.array_equal(got, python_gemm(a, b, 3, 0) + bias)


def test_accumulate_by_hand():
    a = np.full((1, 3), 127, dtype=np.int8)
    b = np.full((3, 1), 127, dtype=np.int8)              # partial sums 16129, 32258, 48387
    wrapped, count = accumulate_gemm(a, b, bits=16, overflow="wrap")
    assert wrapped[0, 0] == 48387 - 65536 and count == 1
    saturated, count = accumulate_gemm(a, b, bits=16, overflow="saturate")
    assert saturated[0, 0] == 32767 and count == 1
    assert np.array_equal(wrap_to_bits([32768, -32769, 5], 16), [-32768, 32767, 5])
    with pytest.raises(ValueError, match="overflow in"):
        accumulate_gemm(a, b, bits=16, overflow="clip")
    with pytest.raises(ValueError, match="bits an integer"):
        accumulate_gemm(a, b, bits=40)


# ---------------------------------------------------------------- im2col, pooling, bias
def test_int_im2col_pads_with_the_zero_point():
    x = np.arange(9, dtype=np.uint8).reshape(1, 1, 3, 3)
    cols = int_im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), pad_value=77)
    assert cols.shape == (9, 9) and cols.dtype == np.uint8
    assert list(cols[0]) == [77, 77, 77, 77, 0, 1, 77, 3, 4]          # top-left window, by hand
    with pytest.raises(ValueError, match="pad_value"):
        int_im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), pad_value=-1)
    with pytest.raises(TypeError, match="integer codes"):
        int_im2col(x.astype(np.float32), (3, 3), (1, 1), (0, 0), (1, 1), 0)


def test_int_max_pool_and_bias():
    x = np.array([[[[1, -5, 3, 2], [0, 4, -8, 7]]]], dtype=np.int8)
    assert np.array_equal(int_max_pool2d(x, (2, 2), (2, 2)), [[[[4, 7]]]])
    acc = np.array([[1, 2]], dtype=np.int32)
    assert np.array_equal(add_bias_int32(acc, np.array([10, -20], dtype=np.int32)), [[11, -18]])
    with pytest.raises(OverflowError):
        add_bias_int32(np.array([[INT32_MAX]], dtype=np.int32), np.array([1], dtype=np.int32))


# ---------------------------------------------------------------- int4 packing
@pytest.mark.exercise("8.4")
def test_pack_int4_by_hand():
    from tinyq.kernels.packing import pack_int4, unpack_int4
    packed = pack_int4(np.array([-8, 7, -1, 3, 5], np.int8))
    assert packed.dtype == np.uint8 and list(packed) == [0x78, 0x3F, 0x05]   # low nibble first; −8 = 0x8, −1 = 0xF
    assert list(pack_int4(np.array([15, 0, 1], np.uint8), signed=False)) == [0x0F, 0x01]
    assert list(unpack_int4(np.array([0x78, 0x3F], np.uint8), 3)) == [-8, 7, -1]
    assert unpack_int4(np.array([0xF0], np.uint8), 2, signed=False).tolist() == [0, 15]


@pytest.mark.exercise("8.4")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("signed", [True, False])
def test_pack_int4_round_trip(seed, signed):
    from tinyq.kernels.packing import pack_int4, unpack_int4
    rng = np.random.default_rng(seed)
    count = int(rng.integers(0, 50))
    codes = rng.integers(-8, 8, count) if signed else rng.integers(0, 16, count)
    packed = pack_int4(codes, signed=signed)
    assert packed.size == (count + 1) // 2
    restored = unpack_int4(packed, count, signed=signed)
    assert restored.dtype == (np.int8 if signed else np.uint8) and np.array_equal(restored, codes)


def test_pack_int4_errors_and_qtensor_storage():
    from tinyq.formats.affine import QParams
    from tinyq.kernels.packing import pack_int4, unpack_int4
    from tinyq.quant.qtensor import QTensor
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([8]))
    with pytest.raises(TypeError, match="integer codes"):
        pack_int4(np.array([0.5]))
    with pytest.raises(ValueError, match="count"):
        unpack_int4(np.zeros(2, np.uint8), 5)
    qp = QParams(0.1, 0, bits=4, signed=True)
    qt = QTensor(np.arange(-8, 7, dtype=np.int8).reshape(3, 5), qp)
    assert qt.nbytes == 8 and qt.packed().size == 8                         # 15 codes → 8 bytes
    assert np.array_equal(QTensor.from_packed(qt.packed(), (3, 5), qp).values, qt.values)
    qt8 = QTensor(np.zeros((3, 5), np.int8), QParams(0.1, 0, bits=6, signed=True))
    assert qt8.nbytes == 15                                                  # 6-bit codes still take a byte each


def test_requantize_shift_matches_the_formats_rounding_module():
    """Once the review work's formats.rounding lands: its rounding_right_shift (gemmlowp's RoundingDivideByPOT
    in NumPy int64) is bit-identical to the Python-integer reference and to the numba requantizer's shift."""
    rounding = pytest.importorskip("tinyq.formats.rounding")
    if not hasattr(rounding, "rounding_right_shift"):
        pytest.skip("tinyq.formats.rounding has no rounding_right_shift yet")
    rng = np.random.default_rng(11)
    values = np.concatenate([np.arange(-40, 41), rng.integers(INT32_MIN, INT32_MAX, 300, endpoint=True),
                             [INT32_MIN, INT32_MAX]]).astype(np.int64)
    for exponent in (0, 1, 2, 5, 13, 31):
        expected = [rounding_divide_by_pot_reference(int(v), exponent) for v in values]
        assert np.array_equal(np.asarray(rounding.rounding_right_shift(values, exponent)), expected)
        # the numba kernel with M = 2^30·2^-31·2^(1−exponent)... only its shift step: m0 = 2^30 halves first
        high = np.array([saturating_rounding_doubling_high_mul_reference(int(v), 1 << 30) for v in values[:100]])
        got = requantize(values[:100].astype(np.int32), 1 << 30, -exponent, 0, INT32_MIN, INT32_MAX)
        assert np.array_equal(got, np.asarray(rounding.rounding_right_shift(high, exponent)))


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (3, 3), (1, 1)),
                                                     ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (0, 1))])
def test_int_max_pool_matches_the_float_engine(kernel, stride, padding):
    from tinyq import functional as F
    from tinyq.tensor import Tensor
    rng = np.random.default_rng(3)
    codes = rng.integers(-128, 128, (2, 3, 7, 9)).astype(np.int8)
    expected = F.max_pool2d(Tensor(codes.astype(np.float32)), kernel, stride, padding).data
    got = int_max_pool2d(codes, kernel, stride, padding)
    assert got.dtype == np.int8 and np.array_equal(got, expected)
