"""Number formats, no autograd inside: minifloats, fixed point, affine integer quantization.

    floats        fp32, fp16, bf16, fp8 e4m3/e5m2, fp4 e2m1: round-to-nearest-even and
                  stochastic rounding onto a format's grid, bit fields encode/decode
    fixed_point   Qm.n formats: rounding modes, overflow modes (wrap, saturate),
                  exact integer add/multiply/rescale/matmul on raw integers

Import the submodules directly: `from tinyq.formats import floats, fixed_point`.
This package imports only NumPy.
"""
