"""What the host gives a run: atomic file writes (:mod:`.atomic`), one process per output
directory (:mod:`.lock`), the memory available (:mod:`.memory`) and the allocator settings that
return freed memory (:mod:`.allocator`). Knows nothing of the physics or the networks."""
