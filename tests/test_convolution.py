"""im2col/col2im against naive loops, conv and pooling forward against direct definitions."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyq as tq
from tinyq import functional as F
from tinyq.convolution import col2im, im2col
from tinyq.kernels import im2col as kernels_im2col


def _im2col_loops(x, kernel, stride, dilation):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c, oh, ow, kh, kw), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    out[:, :, i, j, a, b] = x[:, :, i * sh + a * dh, j * sw + b * dw]
    return out


geometry = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                     st.integers(1, 2), st.integers(1, 2))


@pytest.mark.exercise("2.1")
@settings(max_examples=40, deadline=None)
@given(geometry, st.integers(0, 3))
def test_im2col_matches_loops(geo, extra):
    kh, kw, sh, sw, dh, dw = geo
    h, w = dh * (kh - 1) + 1 + extra, dw * (kw - 1) + 1 + 2 * extra
    x = np.random.default_rng(extra).standard_normal((2, 3, h, w))
    got = im2col(x, (kh, kw), (sh, sw), (dh, dw))
    np.testing.assert_array_equal(got, _im2col_loops(x, (kh, kw), (sh, sw), (dh, dw)))


@pytest.mark.exercise("2.1")
def test_conv2d_equals_the_direct_sum():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    out = F.conv2d(tq.tensor(x), tq.tensor(w), tq.tensor(b), stride=(2, 1)).data
    expected = np.zeros_like(out)
    for o in range(4):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                expected[:, o, i, j] = np.sum(x[:, :, 2 * i:2 * i + 3, j:j + 2] * w[o], axis=(1, 2, 3)) + b[o]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(geometry, st.integers(0, 2))
def test_col2im_is_the_adjoint_of_im2col(geo, extra):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: the definition of the adjoint."""
    kh, kw, sh, sw, dh, dw = geo
    shape = (1, 2, dh * (kh - 1) + 1 + extra, dw * (kw - 1) + 1 + extra)
    rng = np.random.default_rng(extra)
    x = rng.standard_normal(shape)
    cols = im2col(x, (kh, kw), (sh, sw), (dh, dw))
    c = rng.standard_normal(cols.shape)
    assert np.sum(cols * c) == pytest.approx(np.sum(x * col2im(c, shape, (sh, sw), (dh, dw))), rel=1e-10)


def test_grouped_conv_equals_separate_convs():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((6, 2, 3, 3))
    out = F.conv2d(tq.tensor(x), tq.tensor(w), groups=2, padding=1).data
    first = F.conv2d(tq.tensor(x[:, :2]), tq.tensor(w[:3]), padding=1).data
    second = F.conv2d(tq.tensor(x[:, 2:]), tq.tensor(w[3:]), padding=1).data
    np.testing.assert_allclose(out, np.concatenate([first, second], axis=1), rtol=1e-12)


def test_max_pool_and_avg_pool_match_their_definitions():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 6))
    np.testing.assert_array_equal(F.max_pool2d(tq.tensor(x), 2).data, x.reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5)))
    np.testing.assert_allclose(F.avg_pool2d(tq.tensor(x), 2).data, x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(tq.tensor(x), (2, 3)).data,
                               x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)))
    np.testing.assert_allclose(F.global_avg_pool2d(tq.tensor(x)).data, x.mean(axis=(2, 3)))


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 2, 2))
    out = F.max_pool2d(tq.tensor(x), 2, stride=1, padding=1).data
    assert np.all(out == -1.0)


# ------------------------------------------- compiled kernels against their NumPy references
SPECIALS = np.array([np.nan, -np.inf, np.inf, -1.0, 0.0, -0.0, 1.0, 1.0, 2.0])   # NaN, infinities, ties, signed 0


@settings(max_examples=60, deadline=None)
@given(geometry, st.integers(0, 3), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_compiled_max_pool_is_bit_identical_to_the_reference_on_nan_ties_and_inf(geo, extra, dtype, seed):
    """Same maxima (NaN wins, first NaN; ties keep the first) and the same argmax positions, then the same
    backward scatter. Inputs drawn from NaN, +-inf, +-0 and repeated values, so every window has ties."""
    kh, kw, sh, sw, dh, dw = geo
    rng = np.random.default_rng(seed)
    shape = (2, 3, dh * (kh - 1) + 1 + extra, dw * (kw - 1) + 1 + 2 * extra)
    xp = rng.choice(SPECIALS, size=shape).astype(dtype)
    args = ((kh, kw), (sh, sw), (dh, dw))
    out, index = kernels_im2col.max_pool2d(xp, *args)
    ref_out, ref_index = kernels_im2col.max_pool2d_reference(xp, *args)
    assert out.dtype == ref_out.dtype
    np.testing.assert_array_equal(out.view(np.uint8), ref_out.view(np.uint8))   # bit patterns (NaN, -0.0)
    np.testing.assert_array_equal(index, ref_index)
    grad = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(kernels_im2col.max_pool2d_backward(grad, index, shape),
                                  kernels_im2col.max_pool2d_backward_reference(grad, ref_index, shape))


@settings(max_examples=30, deadline=None)
@given(geometry, st.integers(0, 2))
def test_compiled_col2im_is_bit_identical_to_the_reference(geo, extra):
    kh, kw, sh, sw, dh, dw = geo
    rng = np.random.default_rng(extra)
    shape = (2, 3, dh * (kh - 1) + 1 + extra + sh, dw * (kw - 1) + 1 + extra)
    oh, ow = (shape[2] - dh * (kh - 1) - 1) // sh + 1, (shape[3] - dw * (kw - 1) - 1) // sw + 1
    cols = rng.standard_normal((2, 3, kh, kw, oh, ow)).astype(np.float32)
    strided = rng.standard_normal((3, kh, kw, 2, oh, ow)).transpose(3, 0, 1, 2, 4, 5)    # conv's layout, a view
    for patches in (cols, strided):
        np.testing.assert_array_equal(kernels_im2col.col2im(patches, shape, (sh, sw), (dh, dw)),
                                      kernels_im2col.col2im_reference(patches, shape, (sh, sw), (dh, dw)))


def test_max_pool_with_padding_matches_torch_on_nan_and_inf():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(7).choice(SPECIALS[1:], size=(2, 2, 5, 6)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    ours = F.max_pool2d(tq.tensor(x), 3, stride=2, padding=1).data
    theirs = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, stride=2, padding=1).numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("value", [0.0, -np.inf])
def test_padding_equals_numpy_pad(value):
    from tinyq.convolution import _pad_spatial
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 5)).astype(np.float32)
    expected = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)), constant_values=value)
    np.testing.assert_array_equal(_pad_spatial(x, (1, 2), value), expected)


@pytest.mark.parametrize("recompute,chunk_bytes", [(False, 1), (True, 8 * 2**20), (True, 700), (True, 1)])
def test_conv_backward_with_saved_or_recomputed_patches_in_chunks(monkeypatch, recompute, chunk_bytes):
    """Keeping the patch matrix, rebuilding it in chunks of images or one image at a time: the same gradients,
    and they pass gradcheck (grouped, strided, dilated, padded)."""
    from tinyq import convolution
    from tinyq.gradcheck import gradcheck
    monkeypatch.setattr(convolution, "RECOMPUTE_PATCHES", recompute)
    monkeypatch.setattr(convolution, "PATCH_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)

    def fn(x, w, b):
        return F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    gradcheck(fn, [x, w, b], name="conv2d")
    projection = tq.tensor(rng.standard_normal((3, 6, 4, 8)))
    tensors = [tq.tensor(a, requires_grad=True) for a in (x, w, b)]
    (fn(*tensors) * projection).sum().backward()
    monkeypatch.setattr(convolution, "RECOMPUTE_PATCHES", False)
    reference = [tq.tensor(a, requires_grad=True) for a in (x, w, b)]
    (fn(*reference) * projection).sum().backward()
    for ours, theirs in zip(tensors, reference):
        np.testing.assert_allclose(ours.grad, theirs.grad, rtol=1e-12, atol=1e-12)
