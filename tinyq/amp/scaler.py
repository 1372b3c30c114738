"""Loss scaling: L' = S·L, so every gradient is S·g; unscale g = (S·g)/S in fp32 before the update.

Why it is exact: multiplying by S = 2^k only adds k to each exponent, so in binary
floating point S·g and (S·g)/S are exact as long as S·g neither overflows nor
leaves the format's range at the bottom. Small gradients that would round to
zero in fp16 are lifted into its range; the price is overflow, which shows as
inf/NaN in some gradient. Then the step is skipped (weights and optimizer state
untouched) and, in the dynamic rule, the scale is halved.

The dynamic rule is PyTorch's GradScaler (torch.amp.GradScaler, same defaults):

    found inf/NaN:  S <- S · backoff_factor,  tracker <- 0          (the step is skipped)
    else:           tracker <- tracker + 1;  if tracker == growth_interval:
                        S <- S · growth_factor (if still finite),  tracker <- 0

    scaler = LossScaler()                       # dynamic, S = 2^16
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)                  # optional: before clipping, on the true gradients
    optim.clip_grad_norm(params, 1.0)
    scaler.step(optimizer)                      # unscale_ (if not yet), skip on inf/NaN
    scaler.update()                             # the dynamic rule; once per iteration
"""
from __future__ import annotations

import math

import numpy as np

from tinyq.tensor import Tensor

STATE_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker", "dynamic")


def update_scale(scale: float, growth_tracker: int, found_inf: bool, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000) -> tuple[float, int]:
    """(S, t) -> (S·backoff, 0) on inf/NaN, else (S·growth, 0) when t + 1 == interval, else (S, t + 1)."""
    ### BEGIN SOLUTION 12.1
    if found_inf:
        return scale * backoff_factor, 0
    growth_tracker += 1
    if growth_tracker == growth_interval:
        grown = scale * growth_factor
        return (grown if math.isfinite(grown) else scale), 0
    return scale, growth_tracker
    ### END SOLUTION


def unscale_grads(grads: list, inv_scale: float) -> tuple[list, bool]:
    """g <- g · (1/S) in float32 for every array; found_inf = any element of any g is inf or NaN."""
    ### BEGIN SOLUTION 12.2
    unscaled, found_inf = [], False
    for g in grads:
        g32 = np.asarray(g, dtype=np.float32) * np.float32(inv_scale)
        found_inf = found_inf or not bool(np.all(np.isfinite(g32)))
        unscaled.append(g32)
    return unscaled, found_inf
    ### END SOLUTION


def _params_of(target) -> list:
    """The parameters of an optimizer (its .params) or of an iterable of Tensors."""
    params = getattr(target, "params", target)
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"expected an optimizer or an iterable of parameters, got {type(target).__name__}") from None
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"expected parameters (Tensors), got {type(p).__name__}")
    return params


def _check_scale(scale, who: str) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or np.ndim(scale) != 0:
        raise TypeError(f"{who} expects a number for the loss scale, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{who} expects a finite, positive loss scale, got {scale}")
    return scale


class LossScaler:
    """Static (dynamic=False: S never changes) or dynamic (PyTorch's GradScaler rule) loss scaling.

    Both skip a step whose gradients hold inf/NaN. `history` lists (scale used, stepped) per update().
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, dynamic: bool = True):
        self._scale = _check_scale(init_scale, "LossScaler init_scale")
        if not (isinstance(growth_factor, (int, float)) and math.isfinite(growth_factor) and growth_factor > 1):
            raise ValueError(f"LossScaler growth_factor must be a finite number > 1, got {growth_factor!r}")
        if not (isinstance(backoff_factor, (int, float)) and 0 < backoff_factor < 1):
            raise ValueError(f"LossScaler backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, (int, np.integer)) \
                or growth_interval < 1:
            raise ValueError(f"LossScaler growth_interval must be a positive int, got {growth_interval!r}")
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval, self.dynamic = int(growth_interval), bool(dynamic)
        self._growth_tracker = 0
        self._unscaled: dict[int, bool] = {}     # id(optimizer or param list) -> found_inf, this iteration
        self._stepped: set[int] = set()
        self.history: list[tuple[float, bool]] = []

    # ------------------------------------------------------------------ the four verbs
    def get_scale(self) -> float:
        return self._scale

    def scale(self, loss):
        """S · loss (a Tensor stays in the graph, so backward() produces S · gradient)."""
        if isinstance(loss, Tensor):
            return loss * float(self._scale)
        if isinstance(loss, (int, float, np.ndarray, np.floating)):
            return loss * self._scale
        raise TypeError(f"LossScaler.scale expects a Tensor or a number, got {type(loss).__name__}")

    def unscale_(self, optimizer) -> bool:
        """p.grad <- p.grad / S in fp32 for every parameter; returns found_inf. Once per optimizer per step."""
        key = id(optimizer)
        if key in self._unscaled:
            raise RuntimeError("LossScaler.unscale_() has already been called on this optimizer since the last "
                               "update(); the gradients are already unscaled")
        params = [p for p in _params_of(optimizer) if p.grad is not None]
        unscaled, found_inf = unscale_grads([p.grad for p in params], 1.0 / self._scale)
        for p, g in zip(params, unscaled):
            p.grad = g.astype(p.data.dtype, copy=False)
        self._unscaled[key] = found_inf
        return found_inf

    def step(self, optimizer) -> bool:
        """Unscale (unless unscale_ ran), then optimizer.step() only if every gradient is finite.

        Returns True if the optimizer stepped; a skipped step leaves weights and optimizer state untouched.
        """
        key = id(optimizer)
        if key in self._stepped:
            raise RuntimeError("LossScaler.step() has already been called on this optimizer since the last "
                               "update(); call update() once per iteration")
        ### BEGIN SOLUTION 12.3
        if key not in self._unscaled:
            self.unscale_(optimizer)
        self._stepped.add(key)
        if self._unscaled[key]:
            return False
        optimizer.step()
        return True
        ### END SOLUTION

    def update(self) -> float:
        """Apply the dynamic rule with this iteration's inf/NaN finding (static: only record); returns S."""
        if not self._unscaled:
            raise RuntimeError("LossScaler.update() needs a step() or unscale_() in this iteration first")
        found_inf = any(self._unscaled.values())
        self.history.append((self._scale, not found_inf))
        if self.dynamic:
            self._scale, self._growth_tracker = update_scale(
                self._scale, self._growth_tracker, found_inf, self.growth_factor, self.backoff_factor,
                self.growth_interval)
        self._unscaled.clear()
        self._stepped.clear()
        return self._scale

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """{scale, growth_factor, backoff_factor, growth_interval, _growth_tracker, dynamic} as 0-d arrays
        (GradScaler's key names, plus dynamic), ready for tinyq.save."""
        return {"scale": np.array(self._scale, dtype=np.float64),
                "growth_factor": np.array(self.growth_factor, dtype=np.float64),
                "backoff_factor": np.array(self.backoff_factor, dtype=np.float64),
                "growth_interval": np.array(self.growth_interval, dtype=np.int64),
                "_growth_tracker": np.array(self._growth_tracker, dtype=np.int64),
                "dynamic": np.array(self.dynamic, dtype=np.bool_)}

    def load_state_dict(self, state: dict) -> None:
        """Strict: exactly the keys of state_dict(); the scale must be finite and positive."""
        missing, unexpected = set(STATE_KEYS) - set(state), set(state) - set(STATE_KEYS)
        if missing or unexpected:
            raise KeyError(f"LossScaler.load_state_dict: missing keys {sorted(missing)}, unexpected keys "
                           f"{sorted(unexpected)}")
        fresh = LossScaler(init_scale=_check_scale(np.asarray(state["scale"]).item(), "LossScaler.load_state_dict"),
                           growth_factor=float(np.asarray(state["growth_factor"]).item()),
                           backoff_factor=float(np.asarray(state["backoff_factor"]).item()),
                           growth_interval=int(np.asarray(state["growth_interval"]).item()),
                           dynamic=bool(np.asarray(state["dynamic"]).item()))
        tracker = int(np.asarray(state["_growth_tracker"]).item())
        if not 0 <= tracker < fresh.growth_interval:
            raise ValueError(f"LossScaler.load_state_dict: _growth_tracker must be in [0, {fresh.growth_interval}), "
                             f"got {tracker}")
        self._scale, self.growth_factor, self.backoff_factor = fresh._scale, fresh.growth_factor, fresh.backoff_factor
        self.growth_interval, self.dynamic, self._growth_tracker = fresh.growth_interval, fresh.dynamic, tracker
        self._unscaled.clear()
        self._stepped.clear()

    def __repr__(self) -> str:
        kind = "dynamic" if self.dynamic else "static"
        return (f"LossScaler({kind}, scale={self._scale:g}, growth_factor={self.growth_factor:g}, "
                f"backoff_factor={self.backoff_factor:g}, growth_interval={self.growth_interval})")
