"""The exception types for errors a user can cause or fix (config, data, backend, disk)."""


class HashwfaError(ValueError):
    """A problem the user can fix: a bad config key, a malformed FITS file, a
    missing backend. The message names the file, key or array and the fix.

    It subclasses :class:`ValueError` so generic handlers keep working.
    """


class OutputWriteError(HashwfaError, OSError):
    """A result file could not be written (full disk, read-only or missing
    directory, a file where a directory should be). The message names the
    path; whatever was written before stays valid (writes are atomic).
    """
