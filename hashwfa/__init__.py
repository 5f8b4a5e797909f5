"""hashwfa: neural-field weak-field-approximation inversions with hash/grid encodings.

The one-call API (re-exported from :mod:`hashwfa.run.api`, imported on first use so
that ``import hashwfa`` stays light):

- :func:`hashwfa.fit`: a Stokes cube in memory -> :class:`hashwfa.FitResult`
  (maps as astropy Quantities, ``to_fits``, ``write``);
- :func:`hashwfa.fit_file`: the same for a FITS or SST cube on disk.

Subpackages:

- :mod:`hashwfa.encodings`: the seven grid encodings V0..V6 (tiny-cuda-nn when
  available, an exact pure-PyTorch twin everywhere else) and the neural field
  that couples an encoding to an MLP head. Knows nothing of solar physics.
- :mod:`hashwfa.wfa`: spectral lines, observations, weak-field physics,
  the loss, the pixel-wise WFA and synthetic data. Imports neither
  :mod:`hashwfa.encodings` nor :mod:`hashwfa.training`.
- :mod:`hashwfa.training`: the two-phase solver that fits neural fields
  (encodings) through the WFA loss (wfa): settings, model, loop, checkpoints.
- :mod:`hashwfa.run`: the job of ``hashwfa-train`` and the API above.
"""

from typing import Any, List

__version__ = "0.1.0"

from hashwfa.errors import HashwfaError

#: The names :mod:`hashwfa.run.api` lends the package root.
_API = ("fit", "fit_file", "FitResult", "Maps")

__all__ = ["HashwfaError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from hashwfa.run import api

        return getattr(api, name)
    raise AttributeError(f"module 'hashwfa' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_API))
