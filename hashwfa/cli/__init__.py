"""Command-line tools of hashwfa (``hashwfa-train``; see :mod:`hashwfa.cli.train`)."""
