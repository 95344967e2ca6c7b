"""The serving core: model versions loaded by a runtime, their batchers, the registry
of versions and its poller, and a request's work within its deadline. It imports no
web framework (tests/app/test_layout.py), so every edge (HTTP, the multi-process
front) drives the same core."""
