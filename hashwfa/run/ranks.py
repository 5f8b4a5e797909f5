"""The data of a data-parallel run (``torchrun``): rank 0 reads and scans them, the others map the
same file, read only their shard, and check that their config and data are rank 0's."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from hashwfa.config.run_config import RunConfig
from hashwfa.errors import HashwfaError
from hashwfa.run.data import LoadedData, load_data
from hashwfa.schema import differing_keys, flatten
from hashwfa.training.distributed import DistributedContext
from hashwfa.wfa.observation.fingerprint import fingerprint_difference

__all__ = ["SCAN_WORK", "RANK_LOCAL_KEYS", "load_data_ranked"]

#: Rank 0's serial work before the first message of a data-parallel run.
SCAN_WORK = "rank 0's reading and scan of the data"


def load_data_ranked(cfg: RunConfig, dist: DistributedContext,
                      config_dict: Optional[Dict[str, Any]] = None) -> LoadedData:
    """The run's data; under torchrun, rank 0 scans the cube and the others read only their shard.

    Rank 0 builds the observation (for a cube on disk: maps the file and
    scans it frame by frame for the valid pixels) and sends the valid-pixel
    mask (packed bits) to the other ranks, which map the same file without
    scanning it: from then on they read only the frames and pixels of their
    shard (:class:`~hashwfa.training.loss.WFALoss` with ``rows``); the intensity scale goes with
    the mask. Rank 0's error
    (bad data) reaches the others as one message instead of a timeout. The
    others wait for the scan as long as rank 0 lives, whatever its length
    (:meth:`~hashwfa.training.distributed.DistributedContext.broadcast_after_primary_work`).

    With the mask rank 0 sends its resolved config (``config_dict``) and the
    fingerprint of its data (:meth:`Observation.fingerprint`): every other
    rank compares them with its own (the data paths may differ between
    machines; the data may not), and all ranks then share their verdicts, so
    that a rank that differs refuses with one line saying how, and the others
    stop cleanly instead of training a wrong map or losing each other.
    """
    if not dist.enabled:
        return load_data(cfg)
    data, sent = None, None
    if dist.is_primary:
        try:
            data = load_data(cfg)
            sent = ("valid", np.packbits(data.observation.valid), int(data.observation.valid.size),
                    data.observation.intensity_scale, config_dict, data.observation.fingerprint())
        except HashwfaError as exc:
            sent = ("error", str(exc), 0, None, None, None)
            dist.broadcast_after_primary_work(sent, SCAN_WORK)
            raise
    # The others wait for rank 0's scan without the collective timeout (rank 0's heartbeat).
    kind, payload, size, scale, primary_config, primary_fingerprint = dist.broadcast_after_primary_work(
        sent, SCAN_WORK)
    if not dist.is_primary and kind == "error":
        raise HashwfaError(f"rank 0 could not load the data: {payload}")
    problem = None
    if not dist.is_primary:
        problem = _differs_from_primary(dist.rank, config_dict, primary_config)
        if problem is None:
            try:
                data = load_data(cfg, valid=np.unpackbits(payload, count=size).astype(bool), intensity_scale=scale)
                differ = fingerprint_difference(primary_fingerprint, data.observation.fingerprint())
                if differ is not None:
                    problem = (f"rank {dist.rank}: the data differ from rank 0's: {differ} ({data.description}). "
                               "Fix: give every rank the same data files")
            except HashwfaError as exc:
                problem = f"rank {dist.rank}: {exc}"
    verdicts = dist.all_gather_object(problem, "the check that every rank has rank 0's config and data")
    refused = [(rank, p) for rank, p in enumerate(verdicts) if p is not None]
    if problem is not None:
        raise HashwfaError(problem)
    if refused:  # another rank said why; this one stops in one line without repeating it
        ranks = ", ".join(str(rank) for rank, _ in refused)
        raise HashwfaError(f"rank {ranks} refused rank 0's config or data (see its message); nothing was written")
    return data


#: Config keys that may differ between ranks: paths to the same data on other machines (the data are compared).
RANK_LOCAL_KEYS = ("data.path", "data.wavelengths")


def _differs_from_primary(rank: int, ours: Any, primary: Any) -> Optional[str]:
    """None when this rank's resolved config equals rank 0's (but for :data:`RANK_LOCAL_KEYS`), else the message."""
    if ours is None or primary is None:
        return None
    diff = differing_keys(ours, primary, RANK_LOCAL_KEYS)
    if not diff:
        return None
    key = diff[0]
    mine, theirs = flatten(ours).get(key, "(absent)"), flatten(primary).get(key, "(absent)")
    return (f"rank {rank}: its config differs from rank 0's at {key} ({mine!r} here, {theirs!r} on rank 0"
            + (f"; {len(diff) - 1} more key(s)" if len(diff) > 1 else "")
            + "). Fix: start every rank with the same config and --set options")
