"""Global autograd switch used by `no_grad()` and `Function.apply`."""
import contextlib

grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph: results have requires_grad=False."""
    global grad_enabled
    previous, grad_enabled = grad_enabled, False
    try:
        yield
    finally:
        grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Turn graph recording back on inside a no_grad() block."""
    global grad_enabled
    previous, grad_enabled = grad_enabled, True
    try:
        yield
    finally:
        grad_enabled = previous


def is_grad_enabled() -> bool:
    return grad_enabled
