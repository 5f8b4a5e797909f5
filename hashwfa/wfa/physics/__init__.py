"""Weak-field physics: spectral lines and Lande factors (:mod:`.lines`), the WFA forward model and
the wavelength derivatives (:mod:`.weak_field`), Zeeman patterns and polarised line synthesis
(:mod:`.zeeman`), and the magnetic-field maps (:mod:`.maps`)."""
