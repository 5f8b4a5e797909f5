"""What a run tells its user: progress messages and warnings on stderr (``hashwfa-train: ...``)
and every event, timestamped, in ``run.log`` in the output directory."""

from __future__ import annotations

import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional

from hashwfa.run.data import LoadedData

__all__ = ["PROG", "RunLog", "say", "warn", "package_warnings", "log_data", "log_phases"]

#: The command whose job :mod:`hashwfa.run.train` is (the prefix of its messages).
PROG = "hashwfa-train"


class RunLog:
    """``run.log`` in the output directory: one timestamped line per event.

    Lines come before the directory is the run's (the config, the data's
    warnings): they are held and written when :meth:`start` names the file.
    Appended to (a resumed run continues its log); a failed write of the log
    never stops a run. ``enabled=False``: nothing is kept (the other ranks).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._held: List[str] = []
        self._path: Optional[Path] = None

    def write(self, text: str) -> None:
        """Log ``text`` with the local date and time."""
        if not self.enabled:
            return
        self._held.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        if self._path is not None:
            self._flush()

    def start(self, path: Path) -> None:
        """Write the held lines and every later one to ``path``."""
        self._path = path
        self._flush()

    def _flush(self) -> None:
        try:
            with open(self._path, "a", encoding="utf-8") as log:  # type: ignore[arg-type]
                log.writelines(self._held)
            self._held = []
        except OSError:
            pass  # the results matter, not their log; the lines stay held


def say(request: Any, message: str) -> None:
    """A progress message: on stderr unless quiet, and in run.log."""
    log = getattr(request, "log", None)
    if log is not None:
        log.write(message)
    if not request.quiet:
        print(f"{getattr(request, 'prog', PROG)}: {message}", file=sys.stderr)


def warn(request: Any, message: str) -> None:
    """A warning: on stderr even when quiet, and in run.log."""
    log = getattr(request, "log", None)
    if log is not None:
        log.write(f"warning: {message}")
    print(f"{getattr(request, 'prog', PROG)}: warning: {message}", file=sys.stderr)


@contextmanager
def package_warnings(request: Any) -> Iterator[None]:
    """Show the ``warnings.warn`` of hashwfa's own modules as :func:`warn` lines
    (``hashwfa-train: warning: ...``, also in run.log) instead of Python's ``file:line:
    UserWarning`` with a source line; other packages' warnings keep Python's format."""
    package = Path(__file__).resolve().parents[1]

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if str(Path(filename).resolve()).startswith(str(package) + os.sep):
            warn(request, str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.showwarning = show
        yield


def log_data(log: RunLog, data: LoadedData) -> None:
    """The data's lines of run.log: where from, the line, the active wavelengths, the notes."""
    obs = data.observation
    line = obs.line
    log.write(f"data: {data.description}; {obs.n_valid} of {obs.n_pixels} pixels valid")
    log.write(f"line {line.name}: centre {line.center} A, geff {line.geff:.4g}, Gg {line.Gg:.4g}")
    log.write("active wavelengths [A from the line centre]: "
              + ", ".join(f"{w:.4g}" for w in obs.active_wavelengths)
              + f" (indices {list(obs.active_indices)} of {obs.nw}; {obs.wavelength_reference})")
    if data.noise is not None:
        log.write("noise given (data.noise): rms over wavelengths I, Q, U, V = "
                  + ", ".join(f"{v:.3g}" for v in data.noise.per_stokes))
    for note in obs.notes:
        log.write(f"note: {note}")


def log_phases(log: RunLog, result: Any) -> None:
    """One line per phase of the fit (epochs, last loss and learning rate, time) and the final loss."""
    for phase, name in (("blos", "B_los"), ("bqbu", "B_Q, B_U")):
        hist = result.history.get(phase, {})
        losses, lrs = hist.get("loss", []), hist.get("lr", [])
        last = f", last loss {losses[-1]:.4g}, lr {lrs[-1]:.1e}" if losses else ""
        log.write(f"phase {name}: {len(losses)} epochs{last}, {result.timings.get(phase, 0.0):.1f} s")
    log.write(f"final loss (V, Q, U) {result.final_loss:.6g} on {result.device} ({result.backend})")
