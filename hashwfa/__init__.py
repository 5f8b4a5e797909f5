"""hashwfa: neural-field weak-field-approximation inversions with hash/grid encodings.

Subpackages:

- :mod:`hashwfa.encodings`: the seven grid encodings V0..V6 (tiny-cuda-nn when
  available, an exact pure-PyTorch twin everywhere else) and the neural field
  that couples an encoding to an MLP head. Knows nothing of solar physics.
- :mod:`hashwfa.wfa`: spectral lines, observations, weak-field physics,
  the loss, the pixel-wise WFA and synthetic data. Imports neither
  :mod:`hashwfa.encodings` nor :mod:`hashwfa.training`.
- :mod:`hashwfa.training`: the two-phase solver that fits neural fields
  (encodings) through the WFA loss (wfa): settings, model, loop, checkpoints.
"""

__version__ = "0.1.0"

from hashwfa.errors import HashwfaError

__all__ = ["HashwfaError", "__version__"]
