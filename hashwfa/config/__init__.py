"""The run's configuration: the settings tree of one run (:mod:`.run_config`: line, data,
encoding, network, training, physics, regularization, uncertainty, output), its cross-key checks and
the commented-JSON reader. The typed-settings machinery itself is :mod:`hashwfa.schema`."""
