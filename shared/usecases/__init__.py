"""The use cases: the platform's verbs (submit, launch, sync status, reconcile, batch, notify).

They talk to the world only through the ports (`shared.ports`) and decide with the pure domain
(`shared.domain`); adapters and use cases don't import each other (import-linter contracts in
pyproject.toml). The composition root (`functions/wiring.py`) builds them with their adapters.
"""
