"""Sigma maps: the pixel-wise WFA's by linear propagation of the noise (:mod:`.pixelwise`) and the
neural field's from its local risk over bootstrap members (:mod:`.local_risk`)."""
