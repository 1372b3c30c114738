"""Module: a tree of sub-modules and Parameters, with PyTorch-compatible state-dict names.

Attributes that are Parameters or Modules register themselves by name when
assigned; buffers (running statistics) are registered with `register_buffer`.
The state dict is a flat {"0.weight": ndarray, ...} dictionary, so a tinyq
model and the same PyTorch model exchange weights one to one.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import numpy as np

from tinyq.tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that a Module owns and an optimizer updates (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        array = data.data if isinstance(data, Tensor) else np.asarray(data)
        if array.dtype.kind != "f":
            array = array.astype(np.float32)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class for layers and models: subclasses set attributes in __init__ and define forward()."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before "
                               f"assigning attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)       # updating a buffer keeps it registered
            return
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} of "
                            f"{type(self).__name__} (a Parameter or None expected); wrap it: nn.Parameter(...)")
        for table, kind in ((self._modules, Module), (self._parameters, Parameter)):
            if name in table and (isinstance(value, kind) or (kind is Parameter and value is None)):
                table[name] = value                     # replacing keeps its place (Sequential's order)
                object.__setattr__(self, name, value)
                return
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: np.ndarray | None, constant: bool = False) -> None:
        """A state array that is saved in the state dict but not trained (e.g. BatchNorm running mean).

        constant=True: the array describes how the module was configured (e.g. a quantizer's bit-width);
        load_state_dict checks that the saved value equals it instead of overwriting it.
        """
        object.__setattr__(self, name, array)
        self._buffers[name] = "constant" if constant else True

    def _state_loaded(self) -> None:
        """Called after load_state_dict copied arrays into this module (modules that mirror their buffers
        elsewhere, e.g. into an observer, refresh that copy here)."""

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            object.__setattr__(self, name, None)
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    # ---- calling -----------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal ---------------------------------------------------------
    def named_children(self):
        yield from self._modules.items()

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = ""):
        """(name, Parameter) pairs, each Parameter once: a tied weight (b.weight = a.weight) under its first name."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self):
        """Every Parameter once (tied weights are not repeated, so an optimizer steps them once)."""
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self):
        for module_name, module in self.named_modules():
            for name in module._buffers:
                array = getattr(module, name)
                if array is not None:
                    yield (f"{module_name}.{name}" if module_name else name), array

    def apply(self, fn):
        """Call fn(module) on every sub-module (children first) and on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True):
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def set_state_updates(self, enabled: bool) -> bool:
        """Hook for modules whose forward changes their own state even in eval mode (observers): turn that
        on or off and return the previous setting. Plain modules have none (returns False)."""
        return False

    @contextlib.contextmanager
    def evaluating(self):
        """Inside: every module in eval mode and no state updates (observers paused). On exit each module
        gets back its own mode (a frozen BatchNorm stays frozen) and its own state-update setting."""
        modules = list(self.modules())
        modes = [m.training for m in modules]
        updates = [m.set_state_updates(False) for m in modules]
        self.eval()
        try:
            yield self
        finally:
            for module, mode, update in zip(modules, modes, updates):
                object.__setattr__(module, "training", mode)
                module.set_state_updates(update)

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- state dict ----------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """{name: ndarray copy} for every parameter and buffer, named as PyTorch names them."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    state[prefix + name] = param.data.copy()
            for name in module._buffers:
                array = getattr(module, name)
                if array is not None:
                    state[prefix + name] = np.array(array, copy=True)
        return state

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays into parameters and buffers; names, shapes and dtypes must match (strict)."""
        targets = {}
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    targets[prefix + name] = (module, name, param.data)
            for name in module._buffers:
                array = getattr(module, name)
                if array is not None:
                    targets[prefix + name] = (module, name, np.asarray(array))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict into {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        problems = []
        for key, (module, name, current) in targets.items():
            if key not in state:
                continue
            value = np.asarray(state[key])
            if name in module._buffers and module._buffers[name] == "constant" and \
                    (value.shape != current.shape or not np.array_equal(value, current)):
                problems.append(f"{key} is fixed by how the model was configured: expected {current.tolist()}, "
                                f"got {value.tolist()} (the state comes from a model prepared with another "
                                f"configuration{module._describe_constant(name, value)})")
            elif value.shape != current.shape:
                problems.append(f"{key}: expected shape {current.shape}, got {value.shape}")
            elif value.dtype != current.dtype:
                problems.append(f"{key}: expected dtype {current.dtype}, got {value.dtype} "
                                f"(convert the array or the model explicitly)")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        loaded = {}
        for key, (module, name, current) in targets.items():
            if key in state:
                value = np.array(state[key], dtype=current.dtype, copy=True)
                if name in module._parameters:
                    module._parameters[name].data = value
                else:
                    object.__setattr__(module, name, value)
                loaded[id(module)] = module
        for module in loaded.values():
            module._state_loaded()

    def _describe_constant(self, name: str, value: np.ndarray) -> str:
        """Extra words for a constant-buffer mismatch (a quantizer spells out its configuration)."""
        return ""

    # ---- printing --------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, module in self._modules.items():
                child = repr(module).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"
