"""Layer pruning of Llama-architecture LLMs by angular distance (Gromov, Tirumala, Shapourian,
Glorioso, Roberts, "The Unreasonable Ineffectiveness of the Deeper Layers", arXiv 2403.17887;
docs/derivations/prune.md) on your own model and text: load a GGUF file or a Hugging Face
safetensors folder, the angular-distance table, drop a block range, perplexity, export.
Bad arguments raise ValueError with the message of ``dlt prune distances|eval|run`` (naming the
flag); a missing model or text FileNotFoundError; other I/O failures OSError. Blocks are 0-based
and ranges end-exclusive."""

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

Text = Union[str, Sequence[int], npt.NDArray[np.integer]]
PathLike = Union[str, os.PathLike[str]]

def load(path: Optional[PathLike] = None) -> "Model":
    """Load a ``.gguf`` file or a Hugging Face folder (``config.json``, ``*.safetensors``,
    ``tokenizer.json``); weights are dequantised to f32. Without a path: SmolLM2-135M-Instruct
    (Q4_1 GGUF), fetched into the cache if missing (``dltlab.data.fetch("smollm2")``)."""

def read_text(path: PathLike) -> str:
    """A corpus: a UTF-8 text file, or JSON lines (``.jsonl``) with a ``"text"`` field, documents
    joined by a blank line; at most 1 GiB, regular files only."""

def split_text(path: Optional[PathLike] = None) -> tuple[str, str]:
    """(first 90 %, last 10 %) of a corpus, cut at a line break: the training and held-out text
    ``dlt prune`` uses (default: Shakespeare's plays, fetched if missing)."""

class Model:
    """A loaded model. ``drop`` returns a new model that shares the weights."""

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks L."""
    @property
    def hidden(self) -> int:
        """Residual-stream width d."""
    @property
    def vocab(self) -> int:
        """Vocabulary size."""
    @property
    def blocks(self) -> npt.NDArray[np.int64]:
        """Each block's index in the loaded checkpoint (gaps where blocks were dropped)."""
    @property
    def weight_types(self) -> dict[str, int]:
        """Storage types of the weights in the file, e.g. ``{"Q4_1": 210, "F32": 61, "Q8_0": 1}``."""
    @property
    def path(self) -> os.PathLike[str]:
        """The file or folder it was loaded from."""
    def tokenize(self, text: str) -> npt.NDArray[np.uint32]:
        """Token ids (byte-level BPE of the checkpoint's tokenizer; BOS when the model adds one),
        as ``dlt prune tokenize``."""
    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids."""
    def distances(
        self, text: Text, samples: int = 32, len: int = 256, all_tokens: bool = False
    ) -> dict[str, Any]:
        """Mean angular distance between residual-stream states n blocks apart
        (arXiv 2403.17887 §3.2 eq. 7; docs/derivations/prune.md#angular-distance):

            d(x^(l), x^(l+n)) = (1/π) arccos( x^(l)_T·x^(l+n)_T / (‖x^(l)_T‖ ‖x^(l+n)_T‖) ),

        x^(l) the input of block l (x^(L) the last block's output, before the final norm), T the
        last token (every token with ``all_tokens``), averaged over ``samples`` sequences of
        ``len`` tokens cut evenly from ``text`` (a str or token ids). Keys: ``table`` and ``se``
        (float64, L × (L+1): row n−1, column l = d(x^(l), x^(l+n)) and its standard error across
        sequences; NaN for l > L − n), ``best`` (per n < L the block start..end of least distance,
        the rule l*(n) = argmin_l d of docs/derivations/prune.md#block-selection, with its
        distance and se), ``n_layers``, ``samples``, ``tokens_per_sample``, ``position``. The
        same numbers as ``dlt prune distances --json`` on the same text."""
    def perplexity(
        self,
        text: Text,
        ctx: int = 512,
        tokens: Optional[int] = None,
        second_half: bool = False,
    ) -> dict[str, Any]:
        """exp(mean next-token NLL) on non-overlapping windows of ``ctx`` tokens of ``text`` (a str
        or token ids; the first ``tokens`` only when given), each window scored from its second
        token on (from ctx/2 with ``second_half``, as llama.cpp's llama-perplexity;
        docs/derivations/prune.md#protocol). Keys as ``dlt prune eval --json`` (``perplexity``,
        ``nll``, ``nll_se`` — the standard error across windows —, ``tokens``, ``windows``,
        ``ctx``, ``seconds``, ``tokens_per_second``, ``weight_types``) and ``token_nll`` (float64,
        one NLL per scored token, for paired comparisons of two models on the same tokens)."""
    def drop(self, start: int, end: int) -> "Model":
        """The model without blocks ``start..end`` of this model (0-based, end-exclusive; at
        least one block stays); the weights are shared, not copied."""
    def export(self, path: PathLike, safetensors: bool = False) -> os.PathLike[str]:
        """Write the model: a GGUF file whose kept blocks' tensors are copied as stored in the
        source (llama.cpp loads it), or with ``safetensors=True`` a Hugging Face Llama folder
        (f32). Written to a temporary name, then renamed. Returns the path."""
