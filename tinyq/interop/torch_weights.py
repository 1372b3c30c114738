"""A PyTorch state dict (torch.save) read into {name: ndarray}, only through torch.load(weights_only=True).

weights_only=True unpickles tensors and plain containers only, never arbitrary objects, so a .pt file
cannot run code on load. torch is optional: without it, the error says how to convert the file
elsewhere (safetensors.torch.save_file) and read that with tinyq.interop.safetensors instead.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

__all__ = ["load_torch_state_dict"]


def load_torch_state_dict(path) -> OrderedDict[str, np.ndarray]:
    """{name: ndarray} of a state dict saved with torch.save (or a checkpoint dict holding one as "state_dict")."""
    try:
        import torch
    except ModuleNotFoundError:
        raise RuntimeError("reading a PyTorch .pt/.pth file needs torch (pip install torch); without it, convert "
                           "the file where torch is installed with safetensors.torch.save_file(state_dict, "
                           "'model.safetensors') and load that with tinyq.interop.safetensors.load_weights") from None
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"PyTorch file {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (UnpicklingError, RuntimeError from the zip reader, EOFError, ...)
        raise ValueError(f"{path!r} is not a state dict torch.load(weights_only=True) can read (a pickled "
                         f"model object, or a damaged file?): {str(error).splitlines()[0][:300]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict {{name: tensor}}")
    arrays = OrderedDict()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        arrays[name] = np.require(tensor.numpy(), requirements="C")   # keeps 0-d tensors 0-d
    return arrays
