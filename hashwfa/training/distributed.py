"""Data-parallel training over ``torch.distributed``: who this process is, what it owns, the collectives.

A fit launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) runs as ``WORLD_SIZE``
processes, the *ranks*. Each rank holds the whole model and a contiguous
shard of the valid points (:func:`shard_rows`: the rows of
:attr:`hashwfa.training.loss.WFALoss.valid_index`, i.e. valid pixels in row-major
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
  from the file, :mod:`hashwfa.wfa.observation.observation`'s lazy cubes) rank 0 scans
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
  outputs (in :mod:`hashwfa.cli.train`); every rank first predicts its
  shard for its part of the final loss, summed over the ranks, and only
  then does rank 0 predict the whole grid, so no rank waits in a
  collective while it does;
- the sigma maps' bootstrap members (``output.sigmas``) are data-parallel
  fits like the main one: rank 0 writes each member's redrawn cube to a
  scratch file in the output directory and sends its path and valid mask;
  every rank trains on its shard of it (:mod:`hashwfa.training.bootstrap`,
  "Data parallel"; the file must be visible to every rank: one node, or a
  shared file system).

A rank that dies makes the others' next collective fail (gloo: at once, the
connection closes; NCCL: at the timeout) or ``torchrun`` ends them; every
collective here turns that failure into :class:`RankFailure`, one message.

Waiting for rank 0's serial work (rank 0's heartbeat). Every collective
waits at most ``--dist-timeout``, but rank 0 alone does long serial work
while the others wait: the scan of a lazy cube for its valid mask before
the first broadcast, the warm start's baseline map and its fit over all
pixels (``training.init_from``), and before each bootstrap member its pixel-wise WFA,
the noise estimate, the redraw written to the scratch file. On a large
series that outlasts any sensible timeout. So the messages rank 0 sends
after such work (:meth:`DistributedContext.broadcast_after_primary_work`)
are not awaited in the collective: rank 0 marks each one *ready* in the
rendezvous store (the ``TCPStore`` of ``torchrun``'s ``env://`` rendezvous,
the one the process group itself starts from) just before it enters the
broadcast, and the other ranks poll the store for that mark, then
broadcast. While they poll they watch rank 0's *heartbeat*, a counter in
the store that a daemon thread of rank 0 increments ten times per timeout
for as long as rank 0's process lives: they wait as long as it advances,
and stop with :class:`RankFailure` when it has not advanced for
``--dist-timeout`` (rank 0 frozen, or its machine gone) or when the store
cannot be reached (rank 0 hosted it and died: at once). They poll from a
daemon thread on a connection of its own, so a store that stops answering
(hosted by a frozen rank 0, when launched without ``torchrun``'s agent)
blocks that thread only and counts as a silent heartbeat. What the heartbeat cannot
tell is a rank 0 whose process lives but whose main thread is stuck (a
deadlocked read): its thread still beats, and the others wait as long as
``torchrun`` lets that process live. A rank 0 that dies under ``torchrun``
is seen by its agent, which ends the others at once.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

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

#: Rank 0's heartbeat beats this many times per timeout (module docstring).
BEATS_PER_TIMEOUT = 10

#: The store keys: rank 0's heartbeat counter, and the prefix of the "ready" marks.
_STORE_PREFIX = "hashwfa"
_HEARTBEAT_KEY = "rank0-heartbeat"
_READY_KEY = "ready/"


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
        timeout_s: ``--dist-timeout`` in seconds: how long a collective waits, and how long a
            rank waits for rank 0's heartbeat to advance.
        store: the rendezvous store's ``hashwfa`` part (rank 0's heartbeat and ready marks),
            or None (then :meth:`broadcast_after_primary_work` is a plain broadcast).
        heartbeat: rank 0's heartbeat thread, or None.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    timeout_s: float = DEFAULT_TIMEOUT_MINUTES * 60.0
    store: Any = field(default=None, repr=False, compare=False)
    heartbeat: Optional["_Heartbeat"] = field(default=None, repr=False, compare=False)
    # How many messages after rank 0's serial work have been sent: the number of the next one's mark.
    _sent: List[int] = field(default_factory=lambda: [0], repr=False, compare=False)

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

    def _failure(self, what: str, why: str) -> RankFailure:
        return RankFailure(
            f"rank {self.rank} of {self.world_size}: lost the other ranks during {what} ({why}). A rank died or "
            "did not answer within --dist-timeout; files written so far are complete. "
            "Fix: see the other ranks' messages; --resume continues from the last checkpoint."
        )

    def _collective(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except RuntimeError as exc:  # gloo/NCCL/store errors (DistBackendError, timeouts) are RuntimeErrors
            raise self._failure(what, _first_line(exc)) from None

    def broadcast_after_primary_work(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank, sent when rank 0's serial work is done; no timeout while rank 0 lives.

        Every rank calls it, in the same order as its other collectives:
        rank 0 after its serial work (``what``, e.g. the scan of the cube),
        the others as soon as they need the message. Rank 0 marks the
        message ready in the store, then broadcasts; the others wait for the
        mark as long as rank 0's heartbeat advances (module docstring), then
        broadcast. Without a store (or for one process) a plain
        :meth:`broadcast_object`.

        Raises:
            RankFailure: rank 0's heartbeat did not advance for ``timeout_s``, the store is
                gone, or the broadcast failed.
        """
        if not self.enabled:
            return obj
        if self.store is not None:
            key = f"{_READY_KEY}{self._sent[0]}"
            self._sent[0] += 1
            if self.is_primary:
                self._collective(what, self.store.set, key, "1")
            else:
                self._wait_for_primary(key, what)
        return self.broadcast_object(obj, what=f"the broadcast after {what}")

    def _wait_for_primary(self, key: str, what: str) -> None:
        """Wait until ``key`` is set in the store; RankFailure when rank 0's heartbeat stalls for the timeout.

        The store is polled by a daemon thread on its own connection, and
        this thread only watches the time since the heartbeat last advanced:
        a store that stops answering (its host frozen) blocks the poller, not
        this rank, which stops after the timeout as for a silent heartbeat.
        """
        poll_s = min(1.0, self.timeout_s / (2 * BEATS_PER_TIMEOUT))
        seen: Dict[str, Any] = {"advanced": time.monotonic(), "error": None}
        stop, done = threading.Event(), threading.Event()

        def poll() -> None:
            last_beat = None
            try:
                store = self.store.clone()
                while not stop.is_set():
                    if store.check([key]):
                        return
                    beat = store.add(_HEARTBEAT_KEY, 0)
                    if beat != last_beat:
                        last_beat, seen["advanced"] = beat, time.monotonic()
                    stop.wait(poll_s)
            except RuntimeError as exc:  # the store is gone (rank 0 hosted it and died)
                seen["error"] = exc
            finally:
                done.set()

        threading.Thread(target=poll, name="hashwfa-wait-for-rank0", daemon=True).start()
        while not done.wait(poll_s):
            stalled = time.monotonic() - seen["advanced"]
            if stalled > self.timeout_s:
                stop.set()
                raise self._failure(what, f"rank 0's heartbeat has not advanced for {stalled:.0f} s")
        if seen["error"] is not None:
            exc = seen["error"]
            raise self._failure(what, _first_line(exc))

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

    def broadcast_object(self, obj: Any, what: str = "the broadcast from rank 0") -> Any:
        """Rank 0's ``obj`` (picklable, e.g. a checkpoint on the CPU) on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_primary else None]
        self._collective(what, torch.distributed.broadcast_object_list, box, 0)
        return box[0]

    def all_gather_object(self, obj: Any, what: str = "a gather from every rank") -> List[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` for one process."""
        if not self.enabled:
            return [obj]
        box: List[Any] = [None] * self.world_size
        self._collective(what, torch.distributed.all_gather_object, box, obj)
        return box

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
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.enabled and self.is_primary and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` of a backend or store error (their messages run to many lines)."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}"


class _Heartbeat:
    """Rank 0's heartbeat: a daemon thread that adds 1 to the store's counter every ``interval_s`` seconds.

    It uses its own connection to the store (``clone``), so it never waits
    behind the main thread's store calls; it stops quietly at the first
    failed beat (the store is gone: the run is ending).
    """

    def __init__(self, store: Any, interval_s: float) -> None:
        self._store = store.clone()
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hashwfa-rank0-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """One beat."""
        self._store.add(_HEARTBEAT_KEY, 1)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.beat()
            except Exception:  # the store is gone (the run is ending): nothing left to tell
                return

    def stop(self) -> None:
        """Stop beating (the thread ends within one interval)."""
        self._stopped.set()


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
    :class:`RankFailure`. Joins through the ``env://`` rendezvous store, as
    ``init_process_group`` would, and keeps it: on rank 0 a daemon thread
    beats the heartbeat in it (module docstring, "Waiting for rank 0's
    serial work") until :meth:`DistributedContext.close`.

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
    timeout = datetime.timedelta(minutes=timeout_minutes)
    joining = DistributedContext(rank=rank, world_size=world, local_rank=local, backend=backend)

    def join() -> Any:
        # What init_process_group does with init_method "env://", done here to keep the store
        # (public API: rendezvous, PrefixStore, init_process_group(store=...)).
        store, _, _ = next(torch.distributed.rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
        store.set_timeout(timeout)
        torch.distributed.init_process_group(backend=backend, store=torch.distributed.PrefixStore("default_pg", store),
                                             rank=rank, world_size=world, timeout=timeout)
        return torch.distributed.PrefixStore(_STORE_PREFIX, store)

    store = joining._collective("the start (init_process_group)", join)
    heartbeat = _Heartbeat(store, timeout_minutes * 60.0 / BEATS_PER_TIMEOUT) if rank == 0 else None
    return DistributedContext(rank=rank, world_size=world, local_rank=local, backend=backend,
                              timeout_s=timeout_minutes * 60.0, store=store, heartbeat=heartbeat)
