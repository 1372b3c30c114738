"""Tensor, backward, topological order, unbroadcast, no_grad, creation, dtype rules at the Tensor level."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyq as tq
from tinyq.function import unbroadcast
from tinyq.tensor import topological_order


# ------------------------------------------------------------ unbroadcast (1.1)
def _unbroadcast_by_loops(grad, shape):
    """Reference: every element of grad is added to the element of x it was copied from."""
    shape = tuple(shape)
    out = np.zeros(shape, dtype=grad.dtype)
    offset = grad.ndim - len(shape)
    for index in itertools.product(*(range(n) for n in grad.shape)):
        source = tuple(0 if shape[k] == 1 else index[k + offset] for k in range(len(shape)))
        out[source] += grad[index]
    return out


@st.composite
def broadcast_pairs(draw):
    """(grad_shape, x_shape) where x broadcasts to grad: some axes size 1, some leading axes dropped."""
    grad_shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=4)))
    x_shape = tuple(1 if draw(st.booleans()) else n for n in grad_shape)
    drop = draw(st.integers(0, len(x_shape)))
    return grad_shape, x_shape[drop:]


@pytest.mark.exercise("1.1")
@settings(max_examples=60, deadline=None)
@given(broadcast_pairs())
def test_unbroadcast_adds_gradients_of_all_copies(shapes):
    grad_shape, x_shape = shapes
    grad = np.random.default_rng(len(grad_shape)).standard_normal(grad_shape)
    result = unbroadcast(grad, x_shape)
    assert result.shape == x_shape
    np.testing.assert_allclose(result, _unbroadcast_by_loops(grad, x_shape), rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("1.1")
def test_add_with_bias_broadcast_gives_column_sums():
    from tinyq.ops import Add
    ctx = Add()
    Add.forward(ctx, np.arange(6.0).reshape(2, 3), np.zeros((1, 3)))
    grad_x, grad_b = Add.backward(ctx, np.ones((2, 3)))
    np.testing.assert_array_equal(grad_b, [[2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(grad_x, np.ones((2, 3)))


# ----------------------------------------------------- topological order (1.4)
def _diamond():
    """a -> (b, c) -> d, plus a constant: d depends on a through two paths."""
    a = tq.tensor(np.array([1.5, -2.0]), requires_grad=True)
    b = a * 3.0
    c = a.exp()
    d = b * c + b
    return a, b, c, d


@pytest.mark.exercise("1.4")
def test_topological_order_puts_every_node_after_its_inputs():
    a, b, c, d = _diamond()
    loss = d.sum()
    order = topological_order(loss)
    ids = [id(t) for t in order]
    assert len(ids) == len(set(ids)), "a node appears twice"
    assert set(ids) >= {id(a), id(b), id(c), id(d), id(loss)}
    position = {i: k for k, i in enumerate(ids)}
    for node in order:
        if node._ctx is not None:
            for parent in node._ctx.inputs:
                if isinstance(parent, tq.Tensor) and parent.requires_grad:
                    assert position[id(parent)] < position[id(node)]
    assert ids[-1] == id(loss)


@pytest.mark.exercise("1.4")
def test_backward_through_a_diamond_adds_both_paths():
    a, b, c, d = _diamond()
    d.sum().backward()
    x = a.data
    # d = 3a e^a + 3a  =>  d' = 3 e^a + 3a e^a + 3
    np.testing.assert_allclose(a.grad, 3 * np.exp(x) + 3 * x * np.exp(x) + 3, rtol=1e-12)


@pytest.mark.exercise("1.4")
def test_deep_chain_does_not_hit_the_recursion_limit():
    x = tq.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 3000], rtol=1e-9)


# ------------------------------------------------------------------ backward
def test_gradients_accumulate_across_backward_calls():
    x = tq.tensor(np.array([2.0, 3.0]), requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * 2 * x.data)


def test_backward_needs_a_scalar_or_a_seed():
    x = tq.tensor(np.ones(3), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"scalar.*\(3,\)"):
        y.backward()
    y.backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 4.0])


def test_seed_gradient_of_wrong_shape_is_rejected():
    y = tq.tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\)"):
        y.backward(np.ones(2))


def test_backward_twice_through_a_freed_graph_raises():
    x = tq.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = tq.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tq.tensor([1.0]).backward()


def test_no_grad_records_nothing():
    x = tq.tensor(np.ones(2), requires_grad=True)
    with tq.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert tq.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = tq.tensor(np.array([3.0]), requires_grad=True)
    y = (x.detach() * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, [3.0])


def test_retain_grad_keeps_interior_gradients():
    x = tq.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)


def test_shared_gradient_arrays_are_not_aliased():
    a = tq.tensor(np.ones(2), requires_grad=True)
    b = tq.tensor(np.ones(2), requires_grad=True)
    (a + b).sum().backward()
    a.grad += 1.0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


# ------------------------------------------------------------------ creation
def test_creation_dtypes():
    assert tq.tensor([1.0, 2.0]).dtype == np.float32            # Python floats -> float32
    assert tq.tensor(np.zeros(2)).dtype == np.float64           # ndarrays keep their dtype
    assert tq.tensor(np.zeros(2, np.float16)).dtype == np.float16
    assert tq.tensor([1, 2]).dtype == np.int64
    assert tq.zeros(2, 3).shape == (2, 3) and tq.ones((4,)).dtype == np.float32
    assert tq.arange(5).data.tolist() == [0, 1, 2, 3, 4]


def test_random_creation_is_reproducible_with_a_generator():
    a = tq.randn(3, 4, rng=np.random.default_rng(5))
    b = tq.randn(3, 4, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.data, b.data)
    tq.manual_seed(11)
    c = tq.rand(5)
    tq.manual_seed(11)
    np.testing.assert_array_equal(c.data, tq.rand(5).data)
    with pytest.raises(TypeError, match="Generator"):
        tq.randn(2, rng=42)


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        tq.tensor([1, 2], requires_grad=True)


def test_item_and_repr():
    assert tq.tensor([2.5]).item() == 2.5
    with pytest.raises(ValueError, match="one element"):
        tq.tensor([1.0, 2.0]).item()
    assert "requires_grad=True" in repr(tq.tensor([1.0], requires_grad=True))
