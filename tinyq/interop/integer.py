"""Integer-only models as ONNX integer operators (filled in when tinyq.quant.int_modules is available)."""
