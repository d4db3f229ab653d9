"""dltlab: the dlt deep-learning-theory laboratory from Python.

Submodules (a compiled Rust extension, ``dltlab._dltlab``; typed in the ``.pyi`` stubs):

* :mod:`dltlab.theory` -- criticality, layer-by-layer PDLT recursions (``profile``,
  ``profile_multi``), Monte Carlo over real networks (``mc``), dataset NNGP/NTK kernels,
  infinite-width predictions and the trained mean's 1/n trajectory;
* :mod:`dltlab.scaling` -- the solvable model of neural scaling laws (``theory_loss``,
  ``simulate``, ``spectrum``);
* :mod:`dltlab.collapse` -- model collapse: closed forms and the ``linear`` / ``gaussian``
  Monte Carlo;
* :mod:`dltlab.prune` -- angular-distance layer pruning of your own GGUF or Hugging Face model
  on your own text: distances, drop, perplexity, export;
* :mod:`dltlab.data` -- where the data sets are, and fetching them;
* :mod:`dltlab.studies` -- run one of the paper studies of ``dlt reproduce`` and get its
  results (claims, figures) as a dict.

numpy arrays come back as fresh float64 arrays; bad arguments raise ``ValueError`` with the
command line's message, missing files ``FileNotFoundError``.
"""

import sys as _sys

from ._dltlab import __version__, collapse, data, prune, scaling, studies, theory

# The extension's submodules are attributes of dltlab._dltlab; register them so that
# `import dltlab.theory` and `from dltlab.theory import profile` work too.
for _m in (theory, scaling, collapse, prune, data, studies):
    _sys.modules[f"{__name__}.{_m.__name__.rsplit('.', 1)[-1]}"] = _m

__all__ = ["theory", "scaling", "collapse", "prune", "data", "studies", "__version__"]
