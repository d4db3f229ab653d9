"""The paper studies of ``dlt reproduce`` (crates/studies/src/registry.rs), each writing
results.json with its claims, CSV tables and SVG figures."""

import os
from typing import Any, Optional, Union

def list() -> list[dict[str, str]]:
    """Every registered study: ``name``, ``title``, ``paper`` (authors and arXiv id)."""

def run(
    name: str,
    quick: bool = True,
    out: Optional[Union[str, os.PathLike[str]]] = None,
    seed: int = 0,
    force: bool = False,
    quiet: bool = True,
) -> dict[str, Any]:
    """Run study ``name`` as ``dlt reproduce --only NAME [--quick] --out OUT --seed SEED`` does,
    into ``OUT/NAME/`` (``out`` defaults to ``out``), and return its results.json as a dict (its
    ``claims``, each with ``holds``, ``figures``, ``seconds``, ``config_hash``). An earlier run
    with the same configuration is reused unless ``force``. Unknown name: ValueError; a failed
    study: RuntimeError with its error; an unwritable folder: OSError."""

def results(path: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """A results.json (of a study or a ``dlt`` command's ``--out``) as a dict; FileNotFoundError
    if it is missing."""
