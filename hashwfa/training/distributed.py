"""Data-parallel training over ``torch.distributed``: who this process is, what it owns, the collectives.

A fit launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) runs as ``WORLD_SIZE``
processes, the *ranks*. Each rank holds the whole model and a contiguous
shard of the valid points (:func:`shard_rows`: the rows of
:attr:`hashwfa.wfa.loss.WFALoss.valid_index`, i.e. valid pixels in row-major
(y, x) order; for a time series the same rows over (t, y, x), so a shard is
a block of frames). Per step:

- each rank evaluates the loss on its points of the (global) batch and
  scales it by its share ``n_rank / n_batch``, so that the per-rank losses
  and gradients *sum* to those of the global mean, exactly as one process
  computes it;
- :meth:`DistributedContext.all_reduce_gradients` sums the gradients and the
  loss over the ranks in one ``all_reduce`` (one flat buffer of
  ``n_parameters + n_tensors + 1`` float32 values);
- gradient normalisation, Adam, ``ReduceLROnPlateau`` and the progressive
  masks then see the same numbers on every rank, so the parameters stay
  identical (they also start identical: same seed, and broadcast from rank 0).

Minibatch permutations are drawn over the *global* point indices from the
solver's generator (same seed and state on every rank); each rank keeps the
entries of a batch that fall in its shard (:meth:`DistributedContext.local_rows`).
A batch is thus the same set of points whatever the number of ranks, and a
checkpoint (global state only) resumes on another number of ranks with the
same trajectory up to the order of float additions.

What is sharded and what is not (memory per rank):

- sharded: the loss tensors (targets Q, U, V and the WFA coefficients, 5 x
  ``n_rank x A`` float32) and the training coordinates (``n_rank x D``
  float32), on the device: this is what grows with the data;
- read by rank 0 only, then sent: for a cube on disk (FITS or SST, mapped
  from the file, :mod:`hashwfa.wfa.observation`'s lazy cubes) rank 0 scans
  it frame by frame for the valid mask and sends the mask to the others
  (packed bits, ``n_pixels / 8`` bytes; ``hashwfa-train``'s data loading);
  the other ranks map the same file without scanning it and read only the
  frames and pixels of their shard, one frame at a time, while filling their
  loss (``Observation.wfa_input_chunks(rows)``); then they let the mapping
  go (``Observation.release_spectra``). Nothing else global is needed by
  them: the noise, the regularisation weights (refused in a data-parallel
  fit) and the warm start's baseline are rank 0's; with ``training.init_from``
  rank 0 fits the baseline and the others take its parameters and loss;
- synthetic data (made in memory) are still made whole by every rank, which
  let them go once their loss is built;
- not sharded: the model and optimiser state (small, replicated); rank 0
  alone predicts the maps over all pixels at the end (host memory about 5 x
  ``n_pixels`` float64 for the maps), makes the pixel-wise and regularised
  WFA and the sigma maps (frame by frame from the file) and writes the
  outputs (in :mod:`hashwfa.cli.train`); the other ranks predict only their
  shard for their part of the final loss, summed over the ranks;
- the sigma maps' bootstrap members (``output.sigmas``) are data-parallel
  fits like the main one: rank 0 writes each member's redrawn cube to a
  scratch file in the output directory and sends its path and valid mask;
  every rank trains on its shard of it (:mod:`hashwfa.training.uncertainty`,
  "Data parallel"; the file must be visible to every rank: one node, or a
  shared file system).

A rank that dies makes the others' next collective fail (gloo: at once, the
connection closes; NCCL: at the timeout) or ``torchrun`` ends them; every
collective here turns that failure into :class:`RankFailure`, one message.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import torch

from hashwfa.errors import HashwfaError

__all__ = [
    "DEFAULT_TIMEOUT_MINUTES",
    "DistributedContext",
    "RankFailure",
    "SINGLE_PROCESS",
    "init_distributed",
    "launched_by_torchrun",
    "shard_rows",
]

#: How long a rank waits for the others in a collective (or at the start)
#: before giving up, in minutes (``hashwfa-train --dist-timeout``).
DEFAULT_TIMEOUT_MINUTES = 10.0


class RankFailure(HashwfaError):
    """Another rank died or did not answer within the timeout; this rank stops.

    Whatever was written before stays valid (rank 0 writes atomically); the
    run continues from its last checkpoint with ``--resume``.
    """


def shard_rows(n_global: int, rank: int, world_size: int) -> slice:
    """The rows ``start:stop`` of ``n_global`` valid points that ``rank`` owns.

    Contiguous blocks in point order, sizes ``floor`` or ``ceil`` of
    ``n_global / world_size``; the blocks of ranks ``0 .. world_size-1`` tile
    ``0 .. n_global-1`` in order. Depends only on the three integers, so every
    rank computes every rank's shard.

    Raises:
        HashwfaError: fewer points than ranks (a rank would own nothing).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise HashwfaError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
    if n_global < world_size:
        raise HashwfaError(
            f"{n_global} valid points cannot be shared by {world_size} ranks. Fix: run with at most "
            f"{max(n_global, 1)} processes (torchrun --nproc_per_node)."
        )
    return slice(n_global * rank // world_size, n_global * (rank + 1) // world_size)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a data-parallel fit (world size 1: a plain single-process fit).

    Attributes:
        rank: this process's index, 0 .. world_size-1 (0 writes the outputs).
        world_size: the number of processes.
        local_rank: the index on this machine (the GPU it uses).
        backend: ``"nccl"``, ``"gloo"``, or None for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        """True when there are several ranks (the collectives do something)."""
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        """True on rank 0, the one that writes outputs and checkpoints."""
        return self.rank == 0

    def shard(self, n_global: int) -> slice:
        """This rank's rows of ``n_global`` valid points (:func:`shard_rows`)."""
        return shard_rows(n_global, self.rank, self.world_size)

    @staticmethod
    def local_rows(index: torch.Tensor, shard: slice) -> torch.Tensor:
        """The entries of a global minibatch ``index`` that lie in ``shard``, as rows of the shard.

        Args:
            index: ``(B,)`` int64 global point indices (a minibatch).
            shard: this rank's ``start:stop``.

        Returns:
            ``(b,)`` int64 in ``0 .. stop-start-1``, in the batch's order
            (b varies per batch; finding it reads back from the device).
        """
        inside = (index >= shard.start) & (index < shard.stop)
        return index[inside] - shard.start

    # ------------------------------------------------------------ collectives

    def _collective(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except RuntimeError as exc:  # gloo/NCCL errors (DistBackendError, timeouts) are RuntimeErrors
            raise RankFailure(
                f"rank {self.rank} of {self.world_size}: lost the other ranks during {what} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}). A rank died or "
                "did not answer within --dist-timeout; files written so far are complete. "
                "Fix: see the other ranks' messages; --resume continues from the last checkpoint."
            ) from None

    def all_reduce_gradients(self, parameters: Iterable[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Sum the gradients of ``parameters`` and ``loss`` over the ranks, in place; return the summed loss.

        Each rank's loss must already be scaled by its share of the batch,
        so that the sums are the global mean's loss and gradient. A
        parameter without a gradient on this rank (a rank that owns no point
        of a minibatch) counts as zeros; one without a gradient on every rank
        keeps none, as in a single process (the optimiser then skips it).
        One ``all_reduce`` of one flat float32 buffer (the gradients, one
        has-gradient flag per tensor, the loss); no host sync besides the
        collective, unless this rank lacked a gradient. A no-op for one process.
        """
        if not self.enabled:
            return loss
        params = [p for p in parameters if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        dtype = grads[0].dtype
        flags_host = [p.grad is not None for p in params]
        device = grads[0].device
        flags = (torch.ones(len(params), dtype=dtype, device=device) if all(flags_host)
                 else torch.tensor([float(f) for f in flags_host], dtype=dtype, device=device))
        flat = torch.cat([g.reshape(-1) for g in grads] + [flags, loss.detach().reshape(1).to(dtype)])
        self._collective("the gradient all-reduce", torch.distributed.all_reduce, flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is None:
                p.grad = g
            p.grad.copy_(flat[offset:offset + n].view_as(g))
            offset += n
        if not all(flags_host):
            # Only a rank that lacked a gradient can find a tensor no rank had a
            # gradient for; the others skip this read-back (a host sync).
            for p, flag in zip(params, flat[offset:offset + len(params)].tolist()):
                if flag == 0.0:
                    p.grad = None
        return flat[-1]

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (a Python float; one small all-reduce)."""
        if not self.enabled:
            return float(value)
        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        t = torch.tensor([float(value)], dtype=torch.float64, device=device)
        self._collective("a sum over the ranks", torch.distributed.all_reduce, t)
        return float(t.item())

    def broadcast_parameters(self, modules: Iterable[torch.nn.Module]) -> None:
        """Copy rank 0's parameters and buffers to every rank (they must start identical)."""
        if not self.enabled:
            return
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                with torch.no_grad():
                    self._collective("the parameter broadcast", torch.distributed.broadcast, tensor.data, 0)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable, e.g. a checkpoint on the CPU) on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_primary else None]
        self._collective("the broadcast from rank 0", torch.distributed.broadcast_object_list, box, 0)
        return box[0]

    def close(self) -> None:
        """Leave the process group (a no-op for one process).

        Only rank 0 tears the group down. The other ranks finish while rank 0
        is still writing (no final barrier: rank 0's writes, or its risk maps
        after the last bootstrap member, may outlast the collective timeout); tearing
        gloo down under a peer that is still connected aborts the process
        ("terminate called without an active exception"), so they leave the
        group to the end of their process instead (see ``hashwfa-train``'s
        ``main``, which ends them without the interpreter's teardown).
        """
        if self.enabled and self.is_primary and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


#: The context of a plain, single-process fit.
SINGLE_PROCESS = DistributedContext()


def launched_by_torchrun(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when the environment says this process is one rank of several (``WORLD_SIZE`` > 1)."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise HashwfaError(f"WORLD_SIZE={env.get('WORLD_SIZE')!r} is not an integer; launch with torchrun.") from None


def init_distributed(device: torch.device, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> DistributedContext:
    """Join the process group when launched by ``torchrun``; else :data:`SINGLE_PROCESS`.

    Uses NCCL when ``device`` is CUDA (rank ``r`` uses GPU ``LOCAL_RANK``,
    made the current device, so ``"cuda"`` means that GPU from here on),
    gloo on the CPU. ``timeout_minutes`` bounds the start and every
    collective: a rank that waits longer for the others stops with
    :class:`RankFailure`.

    Raises:
        HashwfaError: a timeout that is not positive, torch.distributed or
            the backend is missing, or the environment is incomplete.
        RankFailure: the other ranks did not join within the timeout.
    """
    if not timeout_minutes > 0:
        raise HashwfaError(f"--dist-timeout must be a positive number of minutes, got {timeout_minutes!r}.")
    if not launched_by_torchrun():
        return SINGLE_PROCESS
    env = os.environ
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in env]
    if missing:
        raise HashwfaError(
            f"WORLD_SIZE={env['WORLD_SIZE']} but {', '.join(missing)} not set. Fix: launch with torchrun "
            "(torchrun --nproc_per_node=N -m hashwfa.cli.train CONFIG ...)."
        )
    if not torch.distributed.is_available():
        raise HashwfaError("this torch build has no torch.distributed; a multi-process fit needs it.")
    rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    if device.type == "cuda":
        if not torch.distributed.is_nccl_available():
            raise HashwfaError("this torch build has no NCCL backend. Fix: use --device cpu (gloo), or a CUDA torch.")
        if local >= torch.cuda.device_count():
            raise HashwfaError(
                f"LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} GPU(s). Fix: "
                "torchrun --nproc_per_node at most the number of GPUs."
            )
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        if not torch.distributed.is_gloo_available():
            raise HashwfaError("this torch build has no gloo backend, which a CPU multi-process fit needs.")
        backend = "gloo"
    context = DistributedContext(rank=rank, world_size=world, local_rank=local, backend=backend)
    timeout = datetime.timedelta(minutes=timeout_minutes)
    context._collective("the start (init_process_group)", torch.distributed.init_process_group,
                        backend=backend, timeout=timeout)
    return context
