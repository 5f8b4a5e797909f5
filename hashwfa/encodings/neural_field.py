"""A neural field: an encoding followed by the reference protocol's MLP head."""

from __future__ import annotations

import math

import torch

from hashwfa.encodings.hash_encoding import derive_seed
from hashwfa.errors import HashwfaError


class NeuralField(torch.nn.Module):
    """``encoding -> Linear(enc, n_neurons) -> GELU -> [Linear(n_neurons, n_neurons) -> GELU] x (n_hidden_layers - 1) -> Linear(n_neurons, n_outputs)``.

    With the defaults (64 neurons, 2 hidden layers) this is the reference protocol's
    head: Linear(enc, 64), GELU, Linear(64, 64), GELU, Linear(64, out), with
    exact (erf) GELU as ``nn.GELU()``.

    Args:
        encoding: a module with an integer ``n_output_dims`` (a
            :class:`HashEncoding`, a grid), mapping ``[N, D]`` to ``[N, n_output_dims]``.
        n_outputs: outputs per point.
        n_neurons: width of the hidden layers.
        n_hidden_layers: number of hidden layers (>= 1), each followed by GELU.
        seed: seed of the head's initial weights (``nn.Linear``'s default
            scheme, uniform in +-1/sqrt(fan_in)), drawn from a private
            generator seeded with ``derive_seed(seed, 3)`` (so a head and a
            grid given the same seed do not share a random sequence); the
            global RNG is left alone.

    Attributes:
        encoding: the encoding (its parameters are part of this module).
        layers: the head, an ``nn.Sequential`` of ``nn.Linear`` and ``nn.GELU``.

    ``forward(x)``: ``x [N, D]`` -> ``[N, n_outputs]`` (float32 unless the
    encoding computes in float64).
    """

    def __init__(
        self,
        encoding: torch.nn.Module,
        n_outputs: int,
        n_neurons: int = 64,
        n_hidden_layers: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("n_outputs", n_outputs), ("n_neurons", n_neurons), ("n_hidden_layers", n_hidden_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HashwfaError(f"NeuralField {key} must be an integer >= 1, got {value!r}.")
        width = getattr(encoding, "n_output_dims", None)
        if not isinstance(width, int) or width < 1:
            raise HashwfaError(
                "NeuralField needs an encoding with an integer n_output_dims (e.g. a HashEncoding), "
                f"got {type(encoding).__name__}."
            )
        self.encoding = encoding
        self.n_outputs = int(n_outputs)
        self.n_neurons = int(n_neurons)
        self.n_hidden_layers = int(n_hidden_layers)
        dtype = next((p.dtype for p in encoding.parameters() if p.is_floating_point()), torch.float32)
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32  # tcnn half-precision tables still feed a float32 head

        sizes = [width] + [self.n_neurons] * self.n_hidden_layers + [self.n_outputs]
        gen = torch.Generator().manual_seed(derive_seed(int(seed), 3))
        layers: list[torch.nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            # skip_init: nn.Linear's own initialisation would draw from the global RNG.
            linear = torch.nn.utils.skip_init(torch.nn.Linear, fan_in, fan_out, dtype=dtype)
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                linear.weight.copy_((torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
                linear.bias.copy_((torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            layers.append(linear)
            if i < len(sizes) - 2:
                layers.append(torch.nn.GELU())
        self.layers = torch.nn.Sequential(*layers)

    @property
    def input_dim(self) -> int:
        """D, coordinates per point (the encoding's ``n_input_dims``)."""
        return int(self.encoding.n_input_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, D]`` -> ``[N, n_outputs]``."""
        features = self.encoding(x)
        return self.layers(features.to(self.layers[0].weight.dtype))
