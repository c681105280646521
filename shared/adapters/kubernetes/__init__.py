"""The Kubernetes adapter, one concern a module (each imports only those before it):
`config` (the `K8S_*` settings) -> `client` (config loading, errors, streams) -> `manifests` (pure
rendering and schema validation) -> `backend` (submit / cancel / observe); `watch` (list/watch/relist of
one resource) and `logs` (pod log following) -> `watcher` (the cluster watcher: what a change means,
published as `training-events`)."""
