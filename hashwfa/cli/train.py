"""``hashwfa-train``: one JSON config in, magnetic-field maps out.

::

    hashwfa-train CONFIG [--set key.path=value ...] [--out DIR]
                  [--device auto|cpu|cuda] [--backend auto|tcnn|torch]
                  [--resume] [--overwrite] [--quiet] [--dist-timeout MINUTES]
    hashwfa-train --keys        # every config key, its default and meaning
    hashwfa-train --version
    torchrun --nproc_per_node=N -m hashwfa.cli.train CONFIG ...   # data parallel

Writes ``field.fits``, ``history.json``, ``config.json``, ``model.pt``,
``quicklook.png`` and ``run.log`` into ``--out`` (default ``runs/<config stem>``); see
:mod:`hashwfa.run.outputs`. The job itself is :func:`hashwfa.run.train.run`;
this module parses the arguments and reports. Exit status 0 on success, 2 on
a usage/config/data error or a fit that did not train
(:mod:`hashwfa.training.untrained`; the message, no traceback), 130 when
interrupted by Ctrl-C (SIGINT) and 143 by SIGTERM (a batch scheduler's kill):
the checkpoint written so far is kept, temporaries are removed, and the
message says whether there is a checkpoint to continue from with ``--resume``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
from typing import Iterator, Optional, Sequence

from hashwfa import __version__
from hashwfa.config.run_config import describe_keys
from hashwfa.config.shipped import shipped_config_names
from hashwfa.encodings.backend import BACKENDS
from hashwfa.errors import HashwfaError
from hashwfa.host.allocator import keep_freed_memory
from hashwfa.run.outputs import CHECKPOINT_PT
from hashwfa.run.train import PROG, TrainRun, output_directory_of, run
from hashwfa.training.device import DEVICES
from hashwfa.training.distributed import DEFAULT_TIMEOUT_MINUTES, launched_by_torchrun

__all__ = ["main", "build_parser", "Terminated", "MAX_DIST_TIMEOUT_MINUTES"]

#: The longest --dist-timeout accepted [minutes]: 7 days (torch's timers overflow far beyond).
MAX_DIST_TIMEOUT_MINUTES = 7 * 24 * 60.0


class Terminated(KeyboardInterrupt):
    """SIGTERM received: raised in the main thread and handled like Ctrl-C (exit status 143).

    A subclass of :class:`KeyboardInterrupt`, so every cleanup that runs on
    Ctrl-C (temporaries removed, the lock released) runs on SIGTERM too.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM raises :class:`Terminated` (only the main thread can set a handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_dist_timeout(minutes: float) -> Optional[str]:
    """The error for a --dist-timeout that is not a finite number of minutes in (0, 7 days], or None."""
    if math.isfinite(minutes) and 0 < minutes <= MAX_DIST_TIMEOUT_MINUTES:
        return None
    return (f"--dist-timeout {minutes:g}: the minutes a rank waits must be a finite number above 0 and at most "
            f"{MAX_DIST_TIMEOUT_MINUTES:g} (7 days). Fix: e.g. --dist-timeout {DEFAULT_TIMEOUT_MINUTES:g}.")


def _interrupted(args: argparse.Namespace, how: str) -> str:
    """The message of an interrupted run: what it kept, and what to do next (only what is true)."""
    if args.config is None:
        return f"{PROG}: interrupted ({how})"
    checkpoint = output_directory_of(args) / CHECKPOINT_PT
    if checkpoint.is_file():
        return f"{PROG}: interrupted ({how}); '{checkpoint}' is kept: continue with the same command and --resume"
    return (f"{PROG}: interrupted ({how}) before any checkpoint was written (training.frames = 'independent' "
            "writes none): nothing to resume. Fix: run the same command again, with --overwrite if its output "
            "directory holds files.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hashwfa-train``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fit neural-field weak-field-approximation maps (B_los, B_t, azimuth) "
        "to a spectropolarimetric observation, as a JSON config describes.",
        epilog="Example: hashwfa-train configs/v1.json --set training.epochs_per_phase=50",
    )
    p.add_argument("config", nargs="?", help="commented JSON config, e.g. configs/v1.json, or the name of a "
                   "config shipped with hashwfa: " + ", ".join(shipped_config_names()))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config key (value parsed as JSON, else a string); repeatable",
    )
    p.add_argument("--out", help="output directory (default runs/<config stem>)")
    p.add_argument("--device", choices=DEVICES, help="overrides training.device")
    p.add_argument("--backend", choices=BACKENDS, help="overrides encoding.backend")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in the output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    p.add_argument("--keys", action="store_true", help="list every config key with default and meaning, then exit")
    p.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
                   help="under torchrun: how long a rank waits for the others in a collective, or for rank 0's "
                   "heartbeat to advance while rank 0 works alone (scan, member preparation), before it stops "
                   f"(default {DEFAULT_TIMEOUT_MINUTES:g}; at most {MAX_DIST_TIMEOUT_MINUTES:g}, 7 days)")
    return p


def _errors(metrics: dict, prefix: str) -> str:
    return (f"{metrics[prefix + 'blos_rmse']:.3g} G / {metrics[prefix + 'bt_rmse']:.3g} G / "
            f"{metrics[prefix + 'azimuth_mae']:.3g} deg")


def report(done: TrainRun) -> None:
    """Print what a finished run wrote, its loss and time, and its errors against a known truth."""
    res = done.result
    t = res.timings
    print(f"results: {done.out_dir}/ (field.fits, history.json, config.json, model.pt"
          + (", quicklook.png)" if (done.out_dir / "quicklook.png").exists() else ")"))
    print(
        f"final loss (V, Q, U): {res.final_loss:.6g}; time {t['blos']:.1f} s (B_los) + "
        f"{t['bqbu']:.1f} s (B_Q, B_U) on {res.device} ({res.backend})"
    )
    if done.metrics:
        m = done.metrics
        baselines = f"pixel-wise WFA {_errors(m, 'wfa_')}"
        if "reg_blos_rmse" in m:
            baselines += f"; regularised WFA {_errors(m, 'reg_')}"
        print(f"errors vs truth (B_los rms / B_t rms / azimuth mean abs): field {_errors(m, '')}; {baselines}")


def _is_other_rank() -> bool:
    """True in a rank other than 0 of a torchrun launch."""
    try:
        return launched_by_torchrun() and os.environ.get("RANK", "0") != "0"
    except HashwfaError:
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``hashwfa-train``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    if args.keys:
        print(describe_keys())
        return 0
    problem = _check_dist_timeout(args.dist_timeout)
    if problem is not None:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        with _sigterm_as_interrupt():
            done = run(args)
    except HashwfaError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        if _is_other_rank():
            # As below: a rank other than 0 leaves without the teardown of its gloo group,
            # which aborts the process ("terminate called ...") while rank 0 is still connected.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except OSError as exc:
        # Reading the config or data, or writing results: one line, not a traceback.
        where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
        print(f"{PROG}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"\n{_interrupted(args, 'SIGTERM')}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"\n{_interrupted(args, 'Ctrl-C')}", file=sys.stderr)
        return 130
    if done.rank != 0:  # rank 0 reports
        # This rank's part is done and saved by rank 0's collectives; leave at
        # once, skipping the interpreter's teardown of the still-connected gloo
        # group, which can abort the process while rank 0 writes.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    report(done)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
