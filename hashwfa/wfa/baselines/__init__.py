"""The classic inversions every neural-field map is judged against: the pixel-wise WFA
(:mod:`.pixelwise`) and the spatially regularised WFA (:mod:`.regularized`)."""
