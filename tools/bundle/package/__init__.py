"""A kelp module bundle: the DEEPaaS API in api.py, the engine binding in _kelp.py."""
