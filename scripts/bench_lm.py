#!/usr/bin/env python3
"""PyTorch baseline for `dlt bench`: training throughput (tokens/s) of the same character-level
transformer as dlt-nn's `Gpt` (nanoGPT layout: pre-LN blocks, causal attention, 4x GELU MLP,
untied head), AdamW, batch × ctx tokens per step. Prints one JSON line; exits 3 without torch."""
import json, sys, time
try:
    import torch
    import torch.nn as nn
except ImportError:
    print(json.dumps({"framework": None, "error": "torch not installed"}))
    sys.exit(3)

threads, steps = int(sys.argv[1]), int(sys.argv[2])
vocab, ctx, d, layers, heads, batch = [int(v) for v in sys.argv[3:9]]
torch.set_num_threads(threads)
torch.manual_seed(0)

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        sh = lambda z: z.view(b, t, heads, d // heads).transpose(1, 2)
        y = nn.functional.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))

class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList([Block() for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))

model = Gpt()
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
data = torch.randint(0, vocab, (batch * 16, ctx + 1))
def step(i):
    w = data[(i % 16) * batch:(i % 16 + 1) * batch]
    logits = model(w[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
for i in range(5):
    step(i)
t = time.perf_counter()
for i in range(steps):
    step(i)
print(json.dumps({"framework": "pytorch " + torch.__version__, "tokens_per_s": steps * batch * ctx / (time.perf_counter() - t)}))
