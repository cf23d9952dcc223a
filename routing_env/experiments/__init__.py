"""The experiment harness, on top of the environment layer (``routing_env``) and the routers
(``agents``): runs and grids of runs, ``compare``, the reproduction ``report``, the
non-stationarity bench, the demo, plots, run logs and the ``routing-env`` command line.

Nothing below this package imports it: the environment layer imports neither ``agents`` nor the
harness, and ``agents`` imports only the environment layer (``make lint`` checks the layers).
"""
