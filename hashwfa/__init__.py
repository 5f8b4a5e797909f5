"""hashwfa: neural-field weak-field-approximation inversions with hash/grid encodings.

Subpackages:

- :mod:`hashwfa.encodings`: the seven grid encodings V0..V6 (tiny-cuda-nn when
  available, an exact pure-PyTorch twin everywhere else) and the neural field
  that couples an encoding to an MLP head. Knows nothing of solar physics.
- :mod:`hashwfa.wfa`: spectral lines, observations, weak-field physics,
  synthetic data and the two-phase solver. Imports :mod:`hashwfa.encodings`.
"""

__version__ = "0.1.0"

from hashwfa.errors import HashwfaError

__all__ = ["HashwfaError", "__version__"]
