"""Everything in dlaas-tui that is not presentation: manifests, runs, engines, stores, cost, config.

The UI package (`dlaas_tui`) talks only to `backend.facade`. Heavy libraries (boto3, kubernetes,
pynvml, torch) are imported lazily inside the engine or store that needs them.
"""
