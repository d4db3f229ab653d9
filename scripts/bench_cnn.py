#!/usr/bin/env python3
"""Baseline for `dlt bench`'s CNN row: loss-gradient throughput (forward + backward, float64) of
the jacobian/hessian studies' LeNet-like CNN on 28 x 28 x 1 images, batch 128:
conv 5x5 (C1, pad 2) -> ReLU -> 2x2 average pool -> conv 5x5 (C2) -> ReLU -> pool -> H -> 10,
softmax cross-entropy. PyTorch when importable, else numpy (im2col by sliding windows + GEMM).
Usage: bench_cnn.py THREADS STEPS C1 C2 H. Prints one JSON line:
{"framework": ..., "samples_per_s": ..., "threads": ...}."""
import json, os, sys, time

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
c1, c2, hid = (int(v) for v in sys.argv[3:6]) if len(sys.argv) > 5 else (4, 8, 32)
batch = 128


def bench_torch():
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, c1, 5, padding=2), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(c1, c2, 5), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(25 * c2, hid), torch.nn.ReLU(), torch.nn.Linear(hid, 10),
    ).double()
    x = torch.rand(batch * 4, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (batch * 4,))

    def step(i):
        s = slice((i % 4) * batch, (i % 4 + 1) * batch)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[s]), y[s]).backward()

    for i in range(3):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return "pytorch " + torch.__version__, steps * batch / (time.perf_counter() - t)


def bench_numpy():
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view as windows
    rng = np.random.default_rng(0)
    shapes = [(c1, 5, 5, 1), (c2, 5, 5, c1), (hid, 25 * c2), (10, hid)]
    W = [rng.standard_normal(s) / np.sqrt(np.prod(s[1:])) for s in shapes]
    b = [np.zeros(s[0]) for s in shapes]
    x = rng.random((batch * 4, 28, 28, 1))
    y = rng.integers(0, 10, batch * 4)

    def conv(a, w, pad):  # a: n,h,w,c (channels last); w: o,k,k,c
        if pad:
            a = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        cols = windows(a, (5, 5), axis=(1, 2))  # n,ho,wo,c,5,5
        cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 25 * a.shape[3])
        return cols, a.shape

    def step(i):
        s = slice((i % 4) * batch, (i % 4 + 1) * batch)
        a0, n = x[s], batch
        cols1, _ = conv(a0, W[0], 2)
        h1 = cols1 @ W[0].reshape(c1, -1).T + b[0]
        r1 = np.maximum(h1, 0).reshape(n, 28, 28, c1)
        p1 = r1.reshape(n, 14, 2, 14, 2, c1).mean((2, 4))
        cols2, _ = conv(p1, W[1], 0)
        h2 = cols2 @ W[1].reshape(c2, -1).T + b[1]
        r2 = np.maximum(h2, 0).reshape(n, 10, 10, c2)
        p2 = r2.reshape(n, 5, 2, 5, 2, c2).mean((2, 4)).reshape(n, -1)
        h3 = p2 @ W[2].T + b[2]
        r3 = np.maximum(h3, 0)
        z = r3 @ W[3].T + b[3]
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        p[np.arange(n), y[s]] -= 1
        g = p / n
        grads = [None] * 4
        grads[3] = g.T @ r3
        g = (g @ W[3]) * (h3 > 0)
        grads[2] = g.T @ p2
        g = (g @ W[2]).reshape(n, 5, 1, 5, 1, c2)
        g = (np.broadcast_to(g, (n, 5, 2, 5, 2, c2)) / 4).reshape(n * 100, c2) * (h2 > 0)
        grads[1] = g.T @ cols2
        gcols = (g @ W[1].reshape(c2, -1)).reshape(n, 10, 10, 5, 5, c1)
        gp1 = np.zeros((n, 14, 14, c1))
        for a in range(5):  # col2im: each window tap back to its pixel
            for bb in range(5):
                gp1[:, a:a + 10, bb:bb + 10] += gcols[:, :, :, a, bb]
        g = (np.broadcast_to(gp1.reshape(n, 14, 1, 14, 1, c1), (n, 14, 2, 14, 2, c1)) / 4)
        g = g.reshape(n * 784, c1) * (h1 > 0)
        grads[0] = g.T @ cols1
        return grads

    for i in range(3):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return "numpy " + np.__version__, steps * batch / (time.perf_counter() - t)


try:
    fw, rate = bench_torch()
except ImportError:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    fw, rate = bench_numpy()
print(json.dumps({"framework": fw, "samples_per_s": rate, "threads": threads}))
