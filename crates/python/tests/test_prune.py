"""dltlab.prune on the real SmolLM2-135M-Instruct GGUF, against `dlt prune …` on the same text.

Like the Rust CLI tests, the model and the plays are located with fetching allowed
(`dltlab.data.fetch`): a missing cache is filled, and a failed fetch fails the test. Sizes are
tiny (windows of 32 tokens, 2 probe sequences) so that the file costs seconds, not minutes."""

import json
import os
import subprocess

import numpy as np
import pytest

from dltlab import data, prune


@pytest.fixture(scope="module")
def model():
    return prune.load(data.fetch("smollm2"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    # 6000 characters of the plays (as the CLI tests cut theirs), written to a file for the CLI.
    text = data.fetch("shakespeare").read_text(encoding="utf-8")[200_000:206_000]
    p = tmp_path_factory.mktemp("prune") / "sample.txt"
    p.write_text(text, encoding="utf-8")
    return p


def cli_json(dlt_bin, *args):
    out = subprocess.run([dlt_bin, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_model_properties_and_tokenizer(model):
    assert model.n_layers == 30 and model.hidden == 576 and model.vocab == 49152
    assert model.blocks.dtype == np.int64 and model.blocks.tolist() == list(range(30))
    assert model.weight_types == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    assert model.path == data.path("smollm2")
    ids = model.tokenize("To be, or not to be")
    assert ids.dtype == np.uint32 and ids.ndim == 1 and ids.flags.owndata
    assert model.decode(ids.tolist()) == "To be, or not to be"


def test_perplexity_equals_cli(model, sample, dlt_bin):
    text = prune.read_text(sample)
    r = model.perplexity(text, ctx=32, tokens=64)
    c = cli_json(dlt_bin, "prune", "eval", "--text", str(sample), "--ctx", "32", "--tokens", "64")
    for k in ["perplexity", "nll", "nll_se", "tokens", "windows", "ctx", "weight_types"]:
        assert r[k] == c[k], k
    t = r["token_nll"]
    assert t.dtype == np.float64 and t.shape == (r["tokens"],)
    # exp(mean token NLL) is the perplexity (to rounding of the mean).
    assert np.exp(t.mean()) == pytest.approx(r["perplexity"], rel=1e-12)
    # Token ids give the same numbers as the text.
    ids = model.tokenize(text)
    assert model.perplexity(ids, ctx=32, tokens=64)["nll"] == r["nll"]


def test_distances_equal_cli(model, sample, dlt_bin):
    _, held = prune.split_text(sample)
    d = model.distances(held, samples=2, len=32)
    c = cli_json(dlt_bin, "prune", "distances", "--text", str(sample), "--samples", "2",
                 "--len", "32")
    L = model.n_layers
    assert d["table"].shape == (L, L + 1) and d["table"].dtype == np.float64
    for n in range(1, L + 1):
        row = d["table"][n - 1]
        assert row[: L - n + 1].tolist() == c["table"][n - 1], n
        assert np.isnan(row[L - n + 1:]).all()
    assert d["best"] == c["best"] and d["samples"] == 2 and d["tokens_per_sample"] == 32
    # Angular distances lie in [0, 1] (arccos/π).
    assert np.nanmin(d["table"]) >= 0 and np.nanmax(d["table"]) <= 1


def test_drop_and_export_round_trip(model, sample, tmp_path, dlt_bin):
    text = prune.read_text(sample)
    pruned = model.drop(20, 24)
    assert pruned.n_layers == 26
    assert pruned.blocks.tolist() == list(range(20)) + list(range(24, 30))
    assert model.n_layers == 30  # the source is untouched
    twice = pruned.drop(0, 1)
    assert twice.blocks.tolist() == list(range(1, 20)) + list(range(24, 30))
    p = pruned.perplexity(text, ctx=32, tokens=64)
    out = pruned.export(tmp_path / "pruned.gguf")
    assert out == tmp_path / "pruned.gguf" and out.stat().st_size > 0
    # The exported file, evaluated by the CLI, gives the in-memory pruned model's numbers.
    c = cli_json(dlt_bin, "prune", "eval", "--model", str(out), "--text", str(sample),
                 "--ctx", "32", "--tokens", "64")
    assert c["nll"] == p["nll"] and c["perplexity"] == p["perplexity"]
    assert p["perplexity"] != model.perplexity(text, ctx=32, tokens=64)["perplexity"]


@pytest.mark.parametrize("call, exc, msg", [
    (lambda m: m.drop(3, 3), ValueError, r'--drop "3\.\.3": not a block range'),
    (lambda m: m.drop(0, 30), ValueError, r'--drop "0\.\.30": not a block range START\.\.END with START < END ≤ 30'),
    (lambda m: m.perplexity("hello", ctx=1), ValueError, "--ctx 1: a window of 1 tokens scores nothing"),
    (lambda m: m.perplexity("hello", ctx=32, tokens=8), ValueError, "--tokens 8: fewer than one window"),
    (lambda m: m.perplexity("hello", ctx=32), ValueError, "evaluation text: .* fewer than one window of 32"),
    (lambda m: m.distances("hello", samples=0), ValueError, "--samples 0: must be ≥ 1"),
    (lambda m: m.distances("hello world", samples=5, len=2), ValueError, "--samples 5: the held-out text gives only"),
    (lambda m: m.perplexity([1, 2, 10**9], ctx=2), ValueError, "token id 1000000000 is not in the vocabulary"),
    (lambda m: m.perplexity(3.5, ctx=2), TypeError, "give a str or a sequence of token ids"),
])
def test_prune_errors(model, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(model)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf: no such file or directory"):
        prune.load(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="bad.gguf"):
        prune.load(bad)
    with pytest.raises(FileNotFoundError):
        prune.read_text(tmp_path / "missing.txt")


def test_two_threads_share_a_model(model, sample):
    # One model used from two Python threads at once (the GIL is released during the forward
    # pass): each thread gets the numbers of the sequential call.
    import threading

    ids = model.tokenize(prune.read_text(sample))
    parts = [ids[:32], ids[32:64]]
    want = [model.perplexity(p, ctx=16)["token_nll"] for p in parts]
    got = [None, None]

    def work(i):
        got[i] = model.perplexity(parts[i], ctx=16)["token_nll"]

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for w, g in zip(want, got):
        assert g is not None and g.tolist() == w.tolist()
    assert want[0].tolist() != want[1].tolist()


def test_hugging_face_folder_round_trip(model, tmp_path):
    # Two blocks kept (a small file: the f32 embedding and two blocks), written as a Hugging
    # Face Llama folder and loaded back through the safetensors path: the same weights (the f32
    # values written), so the same per-token NLL up to f32 rounding. The two paths lay out RoPE
    # differently (interleaved pairs for GGUF, halves for HF), so sums run in another order:
    # rounding of order ε_f32·√vocab·|logit| ≈ 1.2e-7·222·20 ≈ 5e-4 nats (measured: 8e-5).
    small = model.drop(1, 29)
    assert small.blocks.tolist() == [0, 29]
    out = small.export(tmp_path / "hf", safetensors=True)
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    back = prune.load(out)
    assert back.n_layers == 2 and back.hidden == model.hidden and back.path == out
    ids = model.tokenize("The quality of mercy is not strained; it droppeth as the gentle rain")
    a = small.perplexity(ids, ctx=len(ids))["token_nll"]
    b = back.perplexity(ids, ctx=len(ids))["token_nll"]
    np.testing.assert_allclose(b, a, rtol=0, atol=5e-4)
