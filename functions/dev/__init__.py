"""Developer tooling, not deployed: `embedded` (`make run`: every function in one process on SQLite and
the in-process bus) and `local_stack` (`make run-emulators`: the deployed topology on the emulators)."""
