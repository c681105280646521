"""Fakes at our own seams, over real HTTP, for the integration tests, the watcher and the benchmark.

- `FakeKubernetesAPI` (`kubernetes_api.py`): Jobs, Secrets, Pods, Events; 409s, label selectors,
  resourceVersion, watch, owner-reference garbage collection, a request log, injectable faults.
- `FakeVertexAPI` (`vertex_api.py`): CustomJobs create / get / list (filters) / cancel.
- `FakeServer` / `Fault` (`_server.py`): the threaded server both build on.
- `fake_trainer.py`: a stand-in trainer script for the local backend (prints lines, a `PROGRESS {...}`
  line, sleeps, exits with a chosen code; see its docstring).
- `backends.py`: the real backends over these fakes (local, Vertex, Kubernetes) as the integration tests
  build them; `api_client.py`: submit a job, read an SSE stream, seed a store; `polling.py`:
  `eventually(pred, timeout, what)`. Test modules import helpers from here, never from each other.

Each fake starts on 127.0.0.1 and a free port: `with FakeKubernetesAPI() as k8s: ... k8s.url`.
"""

from pathlib import Path

from tests.fakes._server import FakeServer, Fault, Request, Response
from tests.fakes.kubernetes_api import FakeKubernetesAPI, parse_selector, selector_matches, write_kubeconfig
from tests.fakes.vertex_api import FakeVertexAPI

FAKE_TRAINER = Path(__file__).resolve().parent / "fake_trainer.py"

__all__ = [
    "FAKE_TRAINER",
    "Fault",
    "FakeKubernetesAPI",
    "FakeServer",
    "FakeVertexAPI",
    "Request",
    "Response",
    "parse_selector",
    "selector_matches",
    "write_kubeconfig",
]
