#!/usr/bin/env python3
"""Baseline for `dlt bench`: SGD training throughput of a 784-512-512-10 tanh MLP (batch 128,
cross-entropy) with PyTorch when it is importable, else a hand-written numpy forward/backward.
Prints one JSON line: {"framework": ..., "samples_per_s": ..., "threads": ...}."""
import json, os, sys, time

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
batch, widths = 128, [784, 512, 512, 10]

def bench_torch():
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    for i in range(3):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < 2:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(batch * 8, 784)
    y = torch.randint(0, 10, (batch * 8,))
    def step(i):
        xb, yb = x[(i % 8) * batch:(i % 8 + 1) * batch], y[(i % 8) * batch:(i % 8 + 1) * batch]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    for i in range(10):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return "pytorch " + torch.__version__, steps * batch / (time.perf_counter() - t)

def bench_numpy():
    import numpy as np
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((widths[i + 1], widths[i])).astype(np.float32) / np.sqrt(widths[i]) for i in range(3)]
    b = [np.zeros(widths[i + 1], np.float32) for i in range(3)]
    x = rng.random((batch * 8, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch * 8)
    def step(i):
        xb, yb = x[(i % 8) * batch:(i % 8 + 1) * batch], y[(i % 8) * batch:(i % 8 + 1) * batch]
        hs, zs = [xb], []
        for l in range(3):
            z = hs[-1] @ W[l].T + b[l]
            zs.append(z)
            hs.append(np.tanh(z) if l < 2 else z)
        z = zs[-1] - zs[-1].max(1, keepdims=True)
        p = np.exp(z); p /= p.sum(1, keepdims=True)
        p[np.arange(batch), yb] -= 1; g = p / batch
        for l in (2, 1, 0):
            gW, gb = g.T @ hs[l], g.sum(0)
            if l > 0:
                g = (g @ W[l]) * (1 - hs[l] ** 2)
            W[l] -= 0.05 * gW; b[l] -= 0.05 * gb
    for i in range(10):
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
