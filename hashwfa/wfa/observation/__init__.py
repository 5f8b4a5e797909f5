"""An observation and its files: the data model (:mod:`.observation`), the Stokes noise
(:mod:`.noise`), and the readers and writers, which return arrays and headers and never build the
data model (:mod:`.stokes_fits` for a Stokes cube and its wavelengths, :mod:`.sst` for SST pipeline
cubes, :mod:`.fits_files` for mapping and writing FITS images)."""
