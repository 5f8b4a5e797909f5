"""One run of the job, start to end: the data a config names, the fit, the baselines, the sigma
maps, and the files written (:mod:`.outputs`: field.fits, history.json, model.pt; :mod:`.quicklook`:
quicklook.png). The command line (:mod:`hashwfa.cli`) only parses arguments and reports."""
