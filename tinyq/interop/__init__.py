"""Interoperability: ONNX export checked in ONNX Runtime, weights in and out via safetensors and PyTorch.

    tinyq.interop.onnx          to_onnx(model, path, mean=..., std=...), run_onnx(model_proto, x)
    tinyq.interop.safetensors   save_safetensors(state, path), load_safetensors(path), load_weights(model, path)
    tinyq.interop.torch_weights load_torch_state_dict(path)  (torch.load(weights_only=True), torch optional)

The optional extra `pip install tinyq[interop]` brings onnx, onnxruntime and safetensors; nothing
here is imported by the rest of tinyq, and these modules import those packages only when called.
"""
