"""Peer of `dlt bench`'s dataset-kernel rows: neural-tangents' infinite-width NNGP and NTK.

    python bench_nt.py INPUTS.npy OUTDIR ACTIVATION DEPTH REPS [DEG [MODE]]

INPUTS.npy is an N×d float64 array; ACTIVATION is `relu` (stax.Relu, its arc-cosine closed form)
or `tanh` (stax.ElementwiseNumerical(jnp.tanh, deg=DEG): a DEG×DEG Gauss–Hermite product rule per
pair, DEG = 25 by default, the value neural-tangents' documentation suggests). The network is
neural-tangents' NTK parameterisation: DEPTH hidden (Dense, φ) layers, then a Dense readout, with
W_std² = C_W, b_std² = C_b (relu: 2, 0; tanh: 1, 0), i.e. `dlt theory kernels --depth DEPTH+1
--cb C_b --cw C_W` (dlt counts Dense layers). Everything runs in float64 (jax_enable_x64).
MODE `jit` (the default) jits the whole kernel_fn (`get` static), as neural-tangents' examples
do; MODE `layers` jits one hidden (Dense, φ) block's kernel_fn and applies it DEPTH times to the
`Kernel` object (the same formulas, compiled once; XLA's fusion rounds differently, e.g. the
ReLU Θ at depth 100 moves by 4e-7 relative between the modes). Measured with 256 inputs on a
2-core machine with 23 GB: the whole-network jit of ReLU at depth 100 compiles for 249 s, and
that of tanh asks XLA for 32.8 GB and fails with RESOURCE_EXHAUSTED.

Prints one JSON object: framework, method, first_s (the first call: tracing, XLA compilation and
one evaluation), times (REPS further calls), steady_s (their median), and writes OUTDIR/nngp.npy
and OUTDIR/ntk.npy (N×N float64) from the last call.
"""

import json
import os
import statistics
import sys
import time
import warnings


def main():
    inputs, outdir, act, depth, reps = sys.argv[1:6]
    deg = int(sys.argv[6]) if len(sys.argv) > 6 else 25
    mode = sys.argv[7] if len(sys.argv) > 7 else "jit"
    if mode not in ("jit", "layers"):
        raise SystemExit(f"MODE '{mode}': use jit or layers")
    depth, reps = int(depth), int(reps)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import neural_tangents as nt
    from neural_tangents import stax

    x = np.load(inputs)
    if x.ndim != 2 or x.dtype != np.float64:
        raise SystemExit(f"{inputs}: need an N×d float64 array, got {x.dtype} {x.shape}")
    if act == "relu":
        cw, cb, phi, method = 2.0, 0.0, stax.Relu(), "stax.Relu (arc-cosine closed form)"
    elif act == "tanh":
        cw, cb = 1.0, 0.0
        phi = stax.ElementwiseNumerical(jnp.tanh, deg=deg)
        method = f"stax.ElementwiseNumerical(tanh, deg={deg}) ({deg}×{deg} Gauss–Hermite per pair)"
    else:
        raise SystemExit(f"activation '{act}': use relu or tanh")
    dense = lambda n: stax.Dense(n, W_std=cw**0.5, b_std=cb**0.5, parameterization="ntk")
    x = jnp.asarray(x)
    if mode == "jit":
        layers = []
        for _ in range(depth):
            layers += [dense(512), phi]
        _, _, kernel_fn = stax.serial(*layers, dense(1))
        kernel_fn = jax.jit(kernel_fn, static_argnames="get")

        def run():
            return kernel_fn(x, None, ("nngp", "ntk"))

    else:
        # The first block maps inputs to a `Kernel`; the next blocks and the readout map a
        # `Kernel` to a `Kernel` (stax kernel functions accept either).
        _, _, block_fn = stax.serial(dense(512), phi)
        _, _, readout_fn = dense(1)
        first_fn = jax.jit(lambda x: block_fn(x, None))
        next_fn = jax.jit(lambda k: block_fn(k))
        out_fn = jax.jit(lambda k: readout_fn(k))

        def run():
            k = first_fn(x)
            for _ in range(depth - 1):
                k = next_fn(k)
            return out_fn(k)

    def call():
        k = run()
        k.nngp.block_until_ready()
        k.ntk.block_until_ready()
        return k

    t = time.perf_counter()
    k = call()
    first = time.perf_counter() - t
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        k = call()
        times.append(time.perf_counter() - t)
    os.makedirs(outdir, exist_ok=True)
    for name, v in (("nngp", k.nngp), ("ntk", k.ntk)):
        tmp = os.path.join(outdir, f".{name}.npy")
        np.save(tmp, np.asarray(v, dtype=np.float64))
        os.replace(tmp, os.path.join(outdir, f"{name}.npy"))
    version = getattr(nt, "__version__", None)
    if version is None:
        from importlib.metadata import version as v

        version = v("neural-tangents")
    print(
        json.dumps(
            {
                "framework": f"neural-tangents {version} (jax {jax.__version__}, float64, {mode})",
                "method": method,
                "first_s": first,
                "times": times,
                "steady_s": statistics.median(times) if times else None,
            }
        )
    )


if __name__ == "__main__":
    main()
