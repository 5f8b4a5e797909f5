"""Synthetic observations with a known field: a plage (:mod:`.plage`) and a time series of it
(:mod:`.series`)."""
