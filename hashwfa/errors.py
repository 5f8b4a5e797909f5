"""The one exception type for errors a user can cause (config, data, backend)."""


class HashwfaError(ValueError):
    """A problem the user can fix: a bad config key, a malformed FITS file, a
    missing backend. The message names the file, key or array and the fix.

    It subclasses :class:`ValueError` so generic handlers keep working.
    """
