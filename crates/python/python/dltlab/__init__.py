"""dltlab: the dlt deep-learning-theory laboratory from Python.

Submodules (a compiled Rust extension, ``dltlab._dltlab``; typed in the ``.pyi`` stubs):

* :mod:`dltlab.theory` -- criticality, layer-by-layer PDLT recursions (``profile``), Monte Carlo
  over real networks (``mc``), dataset NNGP/NTK kernels and infinite-width predictions;
* :mod:`dltlab.scaling` -- the solvable model of neural scaling laws (``theory_loss``,
  ``simulate``);
* :mod:`dltlab.studies` -- run one of the paper studies of ``dlt reproduce`` and get its
  results (claims, figures) as a dict.

numpy arrays come back as fresh float64 arrays; bad arguments raise ``ValueError`` with the
command line's message, missing files ``FileNotFoundError``.
"""

import sys as _sys

from ._dltlab import __version__, scaling, studies, theory

# The extension's submodules are attributes of dltlab._dltlab; register them so that
# `import dltlab.theory` and `from dltlab.theory import profile` work too.
for _m in (theory, scaling, studies):
    _sys.modules[f"{__name__}.{_m.__name__.rsplit('.', 1)[-1]}"] = _m

__all__ = ["theory", "scaling", "studies", "__version__"]
