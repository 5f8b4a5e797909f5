"""Choosing the grid backend: tiny-cuda-nn on NVIDIA GPUs, :class:`TorchGrid` elsewhere.

``make_grid(n_input_dims, config, backend)`` returns a module with the same
interface on both backends: one flat parameter named ``params`` (tcnn's
layout), ``n_input_dims``, ``n_output_dims``, ``config`` and
``forward(x [N, D] in [0, 1]) -> [N, L * F]`` float32. Because the parameter
has the same name, shape and layout on both, a ``state_dict`` saved on one
backend loads into the other.

``backend="auto"`` picks tiny-cuda-nn when ``tinycudann`` imports, CUDA is
available and the interpolation is one tcnn has (not a cubic one), and says
once per process which one it picked (``logging`` at INFO;
a ``UserWarning`` when a GPU is present but tiny-cuda-nn is not, since that
costs speed). Nothing here installs or downloads anything.
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from typing import Any, Mapping, Optional

import torch

from hashwfa.encodings.grid import TorchGrid
from hashwfa.encodings.grid_config import CUBIC_INTERPOLATIONS, TCNN_INTERPOLATIONS, GridConfig, parse_grid_config
from hashwfa.errors import HashwfaError

logger = logging.getLogger(__name__)


def tcnn_cubic_message(interpolation: str) -> str:
    """Why ``backend='tcnn'`` cannot run a cubic ``interpolation``, and the fix."""
    return (
        f"interpolation {interpolation!r} is computed by hashwfa's PyTorch grid only: tiny-cuda-nn's grids "
        f"interpolate {', '.join(TCNN_INTERPOLATIONS)} only. Use backend 'auto' or 'torch' (the PyTorch grid "
        f"runs on the GPU too), or one of tiny-cuda-nn's interpolations."
    )

#: Accepted values of ``backend``.
BACKENDS = ("auto", "tcnn", "torch")

TCNN_INSTALL_HINT = (
    "Install tiny-cuda-nn's PyTorch bindings from source (needs a CUDA toolkit matching your "
    "PyTorch build and an NVIDIA GPU): "
    "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"
    " -- or use backend='torch' (exact, pure PyTorch, any device)."
)

_announced: set[str] = set()


def _announce_once(message: str, warn: bool = False) -> None:
    """Log (or warn) ``message`` the first time this process sees it."""
    if message in _announced:
        return
    _announced.add(message)
    if warn:
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        logger.info(message)


@functools.lru_cache(maxsize=None)
def tcnn_status() -> tuple[bool, str]:
    """Whether tiny-cuda-nn can be used here, and why not (probed once per process).

    Returns:
        ``(True, "tiny-cuda-nn <version> on <gpu>")`` or ``(False, reason)``.
    """
    if not torch.cuda.is_available():
        return False, f"CUDA is not available to PyTorch {torch.__version__} (no NVIDIA GPU or a CPU-only build)"
    try:
        import tinycudann  # noqa: F401  (tcnn raises EnvironmentError, not ImportError, on some setups)
    except Exception as exc:  # ImportError, OSError, RuntimeError from the extension loader
        return False, f"'import tinycudann' failed: {type(exc).__name__}: {exc}"
    version = getattr(tinycudann, "__version__", "(unknown version)")
    return True, f"tiny-cuda-nn {version} on {torch.cuda.get_device_name()}"


def resolve_backend(backend: str = "auto", interpolation: str = "Linear") -> str:
    """The backend ``make_grid`` will use: ``"tcnn"`` or ``"torch"``.

    Args:
        backend: ``"auto"``, ``"tcnn"`` or ``"torch"``.
        interpolation: the grid's interpolation. tiny-cuda-nn has no cubic
            one (:data:`CUBIC_INTERPOLATIONS`): ``"auto"`` then takes the torch
            grid (on a GPU too, and warns once where tcnn would have been
            chosen) and ``"tcnn"`` is an error.

    Raises:
        HashwfaError: an unknown name, ``"tcnn"`` where tiny-cuda-nn or CUDA
            is missing (the message says how to install it), or ``"tcnn"``
            with a cubic interpolation.
    """
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise HashwfaError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, got {backend!r}.")
    backend = backend.lower()
    if backend == "torch":
        return "torch"
    cubic = any(interpolation.lower() == name.lower() for name in CUBIC_INTERPOLATIONS)
    if backend == "tcnn" and cubic:
        raise HashwfaError(tcnn_cubic_message(interpolation))
    available, reason = tcnn_status()
    if backend == "tcnn":
        if not available:
            raise HashwfaError(f"backend='tcnn' needs tiny-cuda-nn and CUDA: {reason}. {TCNN_INSTALL_HINT}")
        return "tcnn"
    if available and cubic:
        _announce_once(
            f"hashwfa: interpolation {interpolation!r} has no tiny-cuda-nn kernel; backend 'auto' runs the "
            "pure-PyTorch grid for it (on the GPU too).",
            warn=True,
        )
        return "torch"
    if available:
        _announce_once(f"hashwfa: grid backend 'auto' chose tiny-cuda-nn ({reason}).")
        return "tcnn"
    if torch.cuda.is_available():
        _announce_once(
            f"hashwfa: grid backend 'auto' fell back to the pure-PyTorch grid although a GPU is present: "
            f"{reason}. {TCNN_INSTALL_HINT}",
            warn=True,
        )
    else:
        _announce_once(f"hashwfa: grid backend 'auto' chose the pure-PyTorch grid ({reason}).")
    return "torch"


class TcnnGrid(torch.nn.Module):
    """``tinycudann.Encoding`` with float32 output and a ``params`` parameter of its own.

    The tcnn module is held outside the module tree and called with this
    module's ``params``, so the ``state_dict`` is ``{"params": [n_params]}``,
    exactly :class:`TorchGrid`'s.

    Args:
        n_input_dims: D.
        encoding_config: tcnn's JSON dict (validated like :class:`TorchGrid`'s).
        seed: tcnn's initialisation seed.

    ``forward(x)``: ``x [N, D]`` in [0, 1] on the GPU -> ``[N, L * F]`` float32.
    """

    backend = "tcnn"

    def __init__(self, n_input_dims: int, encoding_config: Mapping[str, Any], seed: int = 1337) -> None:
        super().__init__()
        import tinycudann as tcnn

        self.config: GridConfig = parse_grid_config(n_input_dims, encoding_config)
        if self.config.interpolation in CUBIC_INTERPOLATIONS:
            raise HashwfaError(tcnn_cubic_message(self.config.interpolation))
        self.n_input_dims = self.config.n_input_dims
        self.seed = int(seed)
        tcnn_config = self.config.to_tcnn()
        if "dtype" in inspect.signature(tcnn.Encoding.__init__).parameters:
            module = tcnn.Encoding(self.n_input_dims, tcnn_config, seed=self.seed, dtype=torch.float32)
        else:  # older bindings: half-precision output, cast in forward
            module = tcnn.Encoding(self.n_input_dims, tcnn_config, seed=self.seed)
        self.n_output_dims = int(module.n_output_dims)
        object.__setattr__(self, "_tcnn", module)  # not a submodule: its parameter is ours
        self.params = module.params

    @property
    def encoding_config(self) -> dict[str, Any]:
        """The resolved tcnn config (every key explicit)."""
        return self.config.to_tcnn()

    def extra_repr(self) -> str:
        return f"n_input_dims={self.n_input_dims}, n_output_dims={self.n_output_dims}, config={self.encoding_config}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x [N, D]`` in [0, 1] into ``[N, L * F]`` float32."""
        module = self._tcnn
        if module.params is not self.params:  # re-bound by .to() or load_state_dict(assign=True)
            module.params = self.params
        return module(x).float()


def make_grid(
    n_input_dims: int,
    encoding_config: Mapping[str, Any],
    backend: str = "auto",
    seed: int = 1337,
    dtype: Optional[torch.dtype] = None,
) -> torch.nn.Module:
    """A multi-resolution grid encoding on the chosen backend.

    Args:
        n_input_dims: D, coordinates per point.
        encoding_config: tcnn's JSON dict (``otype`` ``HashGrid``, ``DenseGrid``
            or ``Grid``; absent keys take tcnn's defaults).
        backend: ``"auto"`` (tiny-cuda-nn when it imports, CUDA is
            available and the interpolation is tcnn's, else the torch grid),
            ``"tcnn"`` or ``"torch"``.
        seed: initialisation seed.
        dtype: the torch grid's table dtype (default float32; float64 for
            gradient checks). tiny-cuda-nn supports float32 only.

    Returns:
        :class:`TcnnGrid` or :class:`TorchGrid`; both have ``params``,
        ``n_input_dims``, ``n_output_dims`` and map ``[N, D]`` in [0, 1] to
        ``[N, L * F]``.

    Raises:
        HashwfaError: an invalid config, an unknown backend, ``"tcnn"``
            without tiny-cuda-nn, or a dtype tcnn cannot use.
    """
    chosen = resolve_backend(backend, parse_grid_config(n_input_dims, encoding_config).interpolation)
    if chosen == "tcnn":
        if dtype not in (None, torch.float32):
            raise HashwfaError(f"the tcnn backend computes in float32; dtype={dtype} needs backend='torch'.")
        return TcnnGrid(n_input_dims, encoding_config, seed=seed)
    return TorchGrid(n_input_dims, encoding_config, seed=seed, dtype=dtype or torch.float32)
