"""A fake Kubernetes API server over real HTTP, for the official `kubernetes` client.

    with FakeKubernetesAPI() as k8s:
        api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=k8s.url))
        ...
        assert k8s.objects("jobs", "default", selector="training-platform/job-id=abc")

What it does, like the real API server:
- namespaced Jobs (`/apis/batch/v1`), Secrets, Services, Pods and Events (`/api/v1`): create, get, list, watch,
  merge / strategic-merge patch, replace, delete; list across namespaces (`/apis/batch/v1/jobs`);
  `GET /api/v1/namespaces/{ns}`; `GET .../pods/{name}/log` (text set with `set_pod_log`);
- `metadata.uid`, `creationTimestamp`, a cluster-wide increasing `resourceVersion` on every write,
  `generation`; Secrets' `stringData` folded into base64 `data`; Jobs get `status: {}` and a selector;
- `409 AlreadyExists` on a duplicate create, `409 Conflict` on a replace with a stale
  `resourceVersion`, `404 NotFound` for a missing object or namespace (`namespaces` are the ones that
  exist, `default` and whatever is passed in), `422 Invalid` for a bad name or a body that fails the
  strict schema (`kubernetes-validate`), all as `Status` objects the client turns into `ApiException`;
- label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and `metadata.name` /
  `metadata.namespace` field selectors on lists and watches;
- delete with `propagationPolicy` (query or `DeleteOptions` body): `Foreground`/`Background` delete the
  dependents (objects whose `ownerReferences` name the deleted uid), `Orphan` strips the reference;
  like the real server, a Job deleted through the API without a policy orphans its dependents;
- watch (`?watch=true`): `ADDED`/`MODIFIED`/`DELETED` lines from `resourceVersion` on (all current
  objects as `ADDED` when none is given), until `timeoutSeconds` or `stop()`.

What it does not: authentication, admission, the Job controller (tests and the watcher's fixtures move
objects along with `set_status` / `put`; `start_pods` makes a Job's pods as the controller would, one per
completion index for an Indexed Job), JSON-patch, server-side apply, `limit`/`continue` paging.

For tests: `requests` / `calls()` (the request log), `inject()` faults (see `_server.py`), `objects()`,
`get()`, `put()`, `set_status()`, `delete_object()`.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.fakes._server import FakeServer, Request, Response, now_rfc3339

# resource -> (group/version prefix, kind, apiVersion)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "jobs": ("/apis/batch/v1", "Job", "batch/v1"),
    "secrets": ("/api/v1", "Secret", "v1"),
    "pods": ("/api/v1", "Pod", "v1"),
    "events": ("/api/v1", "Event", "v1"),
    "services": ("/api/v1", "Service", "v1"),
}
GROUP_OF = {"jobs": "batch", "secrets": "", "pods": "", "events": "", "services": ""}
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# Defaults when a delete names no propagation policy (batch/v1 Jobs keep the legacy orphan default).
DEFAULT_PROPAGATION = {"jobs": "Orphan"}
# Strategic merge patch: list fields merged by key instead of replaced.
MERGE_KEYS = {"ownerReferences": "uid", "finalizers": None, "env": "name", "containers": "name", "tolerations": None}

_NS_PATH = re.compile(r"^(?P<prefix>/api/v1|/apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|status))?$")
_ALL_PATH = re.compile(r"^(?P<prefix>/api/v1|/apis/batch/v1)/(?P<res>[a-z]+)$")
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ---- label selectors -------------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s]*)$")


class SelectorError(ValueError):
    pass


def parse_selector(text: str | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """`a=b,c!=d,e in (x,y),!f,g` -> [(key, op, values)]; raises SelectorError."""
    terms = []
    for part in _split_top(text or ""):
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            terms.append((m["key"], m["op"], values))
        elif m := _EQ_RE.match(part):
            terms.append((m["key"], "!=" if m["op"] == "!=" else "=", (m["value"],)))
        elif part.startswith("!") and re.match(r"^![^\s=!(),]+$", part):
            terms.append((part[1:], "!exists", ()))
        elif re.match(r"^[^\s=!(),]+$", part):
            terms.append((part, "exists", ()))
        else:
            raise SelectorError(f"unable to parse requirement: {part!r}")
    return terms


def selector_matches(terms: list[tuple[str, str, tuple[str, ...]]], labels: dict[str, str]) -> bool:
    for key, op, values in terms:
        present = key in labels
        value = labels.get(key)
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and present and value == values[0]:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
    return True


def _field_matches(text: str | None, obj: dict[str, Any]) -> bool:
    for key, op, values in parse_selector(text):
        meta = obj.get("metadata", {})
        actual = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}.get(key)
        if key not in ("metadata.name", "metadata.namespace"):
            raise SelectorError(f'field label not supported: "{key}"')
        if op == "=" and actual != values[0]:
            return False
        if op == "!=" and actual == values[0]:
            return False
    return True


def merge_patch(target: Any, patch: Any, *, strategic: bool = False, key: str | None = None) -> Any:
    """RFC 7386 JSON merge patch; with `strategic`, lists in MERGE_KEYS merge by their key."""
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(target, list) and key in MERGE_KEYS:
            mk = MERGE_KEYS[key]
            out = list(target)
            for item in patch:
                if mk and isinstance(item, dict) and mk in item:
                    idx = next((i for i, t in enumerate(out) if isinstance(t, dict) and t.get(mk) == item[mk]), None)
                    if idx is None:
                        out.append(item)
                    else:
                        out[idx] = merge_patch(out[idx], item, strategic=True)
                elif item not in out:
                    out.append(item)
            return out
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v, strategic=strategic, key=k)
    return result


def write_kubeconfig(url: str, path: Path, namespace: str | None = None) -> Path:
    """A kubeconfig pointing the official client (or a subprocess of ours) at a fake API server."""
    context_ns = f"    namespace: {namespace}\n" if namespace else ""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters:\n- name: fake\n  cluster:\n    server: {url}\n"
        "users:\n- name: fake\n  user:\n    token: fake\n"
        "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n" + context_ns
    )
    return path


class FakeKubernetesAPI(FakeServer):
    def __init__(self, namespaces: tuple[str, ...] = ("default",), *, validate: bool = True, k8s_version: str = "1.37"):
        super().__init__()
        self.namespaces = set(namespaces)
        self.validate = validate
        self.k8s_version = k8s_version
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.resource_version = 0
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, type, resource, object)
        self.pod_logs: dict[tuple[str, str], str] = {}
        self._changed = threading.Condition(self.lock)

    # ---- helpers for tests and other fakes' users ------------------------------------------------
    def objects(self, resource: str, namespace: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        terms = parse_selector(selector)
        with self.lock:
            return [
                copy.deepcopy(o)
                for (res, ns, _), o in sorted(self.store.items())
                if res == resource and (namespace is None or ns == namespace) and selector_matches(terms, o["metadata"].get("labels") or {})
            ]

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.store.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or overwrite an object directly (a pod the Job controller would have made, say)."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            ns = meta.setdefault("namespace", "default")
            self.namespaces.add(ns)
            key = (resource, ns, meta["name"])
            existed = key in self.store
            self._fill(resource, obj, self.store.get(key))
            return copy.deepcopy(self._write(key, obj, "MODIFIED" if existed else "ADDED"))

    def set_status(self, resource: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = copy.deepcopy(self.store[(resource, namespace, name)])
            obj["status"] = status
            return copy.deepcopy(self._write((resource, namespace, name), obj, "MODIFIED"))

    def delete_object(self, resource: str, namespace: str, name: str, propagation: str = "Background") -> bool:
        with self.lock:
            return self._delete((resource, namespace, name), propagation)

    def start_pods(self, namespace: str, job_name: str, status: dict[str, Any] | None = None) -> list[str]:
        """What the Job controller does on creation: the Job's pods (one per completion index for an
        Indexed Job, named `<job>-<index>-<random>`, with the index annotation and label, hostname
        `<job>-<index>` and the template's subdomain), owned by the Job. Returns their names by index."""
        with self.lock:
            job = copy.deepcopy(self.store[("jobs", namespace, job_name)])
        spec = job["spec"]
        template = spec["template"]
        indexed = spec.get("completionMode") == "Indexed"
        count = int(spec.get("parallelism") or spec.get("completions") or 1)
        names = []
        for index in range(count):
            meta = template.get("metadata") or {}
            labels = dict(meta.get("labels") or {})
            annotations = dict(meta.get("annotations") or {})
            pod_spec = copy.deepcopy(template["spec"])
            if indexed:
                labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
                pod_spec["hostname"] = f"{job_name}-{index}"
            name = f"{job_name}-{index}-{uuid.uuid4().hex[:5]}" if indexed else f"{job_name}-{uuid.uuid4().hex[:5]}"
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job["metadata"]["uid"], "controller": True}
            self.put(
                "pods",
                {
                    "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations, "ownerReferences": [owner]},
                    "spec": pod_spec,
                    "status": copy.deepcopy(status or {"phase": "Pending"}),
                },
            )
            names.append(name)
        return names

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        with self.lock:
            self.pod_logs[(namespace, name)] = text

    # ---- the API's error shape -------------------------------------------------------------------
    def error(self, status: int, message: str, reason: str = "", details: dict[str, Any] | None = None) -> Response:
        reason = reason or {
            400: "BadRequest",
            403: "Forbidden",
            404: "NotFound",
            409: "Conflict",
            422: "Invalid",
            500: "InternalError",
            503: "ServiceUnavailable",
            429: "TooManyRequests",
            504: "Timeout",
        }.get(status, "Unknown")
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": status}
        if details:
            body["details"] = details
        return Response(status, body)

    def _not_found(self, resource: str, name: str) -> Response:
        group = GROUP_OF[resource]
        what = f"{resource}.{group}" if group else resource
        return self.error(404, f'{what} "{name}" not found', "NotFound", {"name": name, "group": group, "kind": resource})

    # ---- routing ---------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        path = request.path
        if m := _NAMESPACE_PATH.match(path):
            if request.method != "GET":
                return self.error(405, "the fake only reads namespaces", "MethodNotAllowed")
            ns = m["ns"]
            if ns not in self.namespaces:
                return self.error(404, f'namespaces "{ns}" not found', "NotFound", {"name": ns, "kind": "namespaces"})
            return Response(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}, "status": {"phase": "Active"}})
        if m := _ALL_PATH.match(path):
            res = m["res"]
            if res not in RESOURCES or RESOURCES[res][0] != m["prefix"] or request.method != "GET":
                return self.error(404, f"the server could not find the requested resource ({path})", "NotFound")
            return self._list(request, res, None)
        m = _NS_PATH.match(path)
        if not m or m["res"] not in RESOURCES or RESOURCES[m["res"]][0] != m["prefix"]:
            return self.error(404, f"the server could not find the requested resource ({path})", "NotFound")
        res, ns, name, sub = m["res"], m["ns"], m["name"], m["sub"]
        method = request.method
        try:
            if name is None:
                if method == "GET":
                    return self._list(request, res, ns)
                if method == "POST":
                    return self._create(request, res, ns)
                return self.error(405, f"{method} is not supported on a collection by the fake", "MethodNotAllowed")
            if sub == "log":
                return self._log(res, ns, name)
            if method == "GET":
                return self._get(res, ns, name)
            if method in ("PATCH",):
                return self._patch(request, res, ns, name, status_only=sub == "status")
            if method == "PUT":
                return self._replace(request, res, ns, name)
            if method == "DELETE":
                return self._delete_request(request, res, ns, name)
        except SelectorError as exc:
            return self.error(400, str(exc), "BadRequest")
        return self.error(405, f"{method} is not supported by the fake", "MethodNotAllowed")

    # ---- verbs -----------------------------------------------------------------------------------
    def _create(self, request: Request, res: str, ns: str) -> Response:
        body = request.body
        kind, api_version = RESOURCES[res][1], RESOURCES[res][2]
        if not isinstance(body, dict):
            return self.error(400, "the request body is not a JSON object", "BadRequest")
        if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, api_version):
            return self.error(400, f"the body is a {body.get('apiVersion')}/{body.get('kind')}, not {api_version}/{kind}", "BadRequest")
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") not in (None, ns):
            return self.error(400, "the namespace of the provided object does not match the namespace sent on the request", "BadRequest")
        if ns not in self.namespaces:
            return self.error(404, f'namespaces "{ns}" not found', "NotFound", {"name": ns, "kind": "namespaces"})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name") or ""
        problem = self._invalid(res, body)
        if problem:
            return self.error(422, f'{kind} "{name}" is invalid: {problem}', "Invalid", {"name": name, "kind": kind})
        with self.lock:
            key = (res, ns, name)
            if key in self.store:
                group = GROUP_OF[res]
                what = f"{res}.{group}" if group else res
                return self.error(409, f'{what} "{name}" already exists', "AlreadyExists", {"name": name, "group": group, "kind": res})
            body["kind"], body["apiVersion"] = kind, api_version
            meta["namespace"] = ns
            self._fill(res, body, None)
            return Response(201, copy.deepcopy(self._write(key, body, "ADDED")))

    def _get(self, res: str, ns: str, name: str) -> Response:
        obj = self.get(res, ns, name)
        return Response(200, obj) if obj else self._not_found(res, name)

    def _list(self, request: Request, res: str, ns: str | None) -> Response:
        terms = parse_selector(request.param("labelSelector"))
        field_sel = request.param("fieldSelector")
        if request.param("watch") in ("true", "1"):
            return self._watch(request, res, ns, terms, field_sel)
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (r, n, _), o in sorted(self.store.items())
                if r == res and (ns is None or n == ns) and selector_matches(terms, o["metadata"].get("labels") or {}) and _field_matches(field_sel, o)
            ]
            rv = str(self.resource_version)
        kind, api_version = RESOURCES[res][1], RESOURCES[res][2]
        return Response(200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": rv}, "items": items})

    def _patch(self, request: Request, res: str, ns: str, name: str, *, status_only: bool) -> Response:
        ctype = request.headers.get("content-type", "")
        if "json-patch" in ctype or not isinstance(request.body, dict):
            return self.error(415, f"the fake supports merge and strategic-merge patches, not {ctype}", "UnsupportedMediaType")
        with self.lock:
            current = self.store.get((res, ns, name))
            if current is None:
                return self._not_found(res, name)
            patch = request.body if not status_only else {"status": request.body.get("status")}
            merged = merge_patch(current, patch, strategic="strategic" in ctype)
            for fixed in ("uid", "creationTimestamp", "namespace", "name"):
                merged["metadata"][fixed] = current["metadata"].get(fixed)
            self._fill(res, merged, current)
            return Response(200, copy.deepcopy(self._write((res, ns, name), merged, "MODIFIED")))

    def _replace(self, request: Request, res: str, ns: str, name: str) -> Response:
        body = request.body
        if not isinstance(body, dict):
            return self.error(400, "the request body is not a JSON object", "BadRequest")
        with self.lock:
            current = self.store.get((res, ns, name))
            if current is None:
                return self._not_found(res, name)
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                return self.error(
                    409,
                    f'Operation cannot be fulfilled on {res} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                    "Conflict",
                )
            body.setdefault("metadata", {}).update({k: current["metadata"][k] for k in ("uid", "creationTimestamp", "namespace", "name")})
            body["kind"], body["apiVersion"] = RESOURCES[res][1], RESOURCES[res][2]
            self._fill(res, body, current)
            return Response(200, copy.deepcopy(self._write((res, ns, name), body, "MODIFIED")))

    def _delete_request(self, request: Request, res: str, ns: str, name: str) -> Response:
        policy = request.param("propagationPolicy")
        if isinstance(request.body, dict) and request.body.get("propagationPolicy"):
            policy = request.body["propagationPolicy"]
        policy = policy or DEFAULT_PROPAGATION.get(res, "Background")
        if policy not in ("Foreground", "Background", "Orphan"):
            return self.error(400, f"unknown propagationPolicy {policy!r}", "BadRequest")
        with self.lock:
            obj = self.store.get((res, ns, name))
            if obj is None:
                return self._not_found(res, name)
            uid = obj["metadata"]["uid"]
            self._delete((res, ns, name), policy)
        return Response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": GROUP_OF[res], "kind": res, "uid": uid},
            },
        )

    def _log(self, res: str, ns: str, name: str) -> Response:
        if res != "pods" or (res, ns, name) not in self.store:
            return self._not_found(res, name)
        return Response(200, self.pod_logs.get((ns, name), ""), {"Content-Type": "text/plain"})

    def _watch(self, request: Request, res: str, ns: str | None, terms: list, field_sel: str | None) -> Response:
        timeout = float(request.param("timeoutSeconds") or 5)
        since = request.param("resourceVersion")
        visible = self._watch_filter(res, ns, terms, field_sel)

        def stream() -> Iterator[bytes]:
            import time as _time

            deadline = _time.monotonic() + timeout
            with self.lock:
                initial, cursor = self._watch_start(since, visible)
            yield from initial
            while not self._stopping.is_set():
                with self._changed:
                    pending, cursor = self._watch_pending(cursor, visible)
                    if not pending:
                        left = deadline - _time.monotonic()
                        if left <= 0:
                            return
                        self._changed.wait(min(left, 0.1))
                        continue
                yield from pending

        return Response(200, stream=stream())

    # ---- watch parts (shared with tests/fakes/kubernetes_watch.py) --------------------------------
    @staticmethod
    def _watch_filter(res: str, ns: str | None, terms: list, field_sel: str | None) -> Callable[[str, dict[str, Any]], bool]:
        def visible(r: str, obj: dict[str, Any]) -> bool:
            return (
                r == res
                and (ns is None or obj["metadata"].get("namespace") == ns)
                and selector_matches(terms, obj["metadata"].get("labels") or {})
                and _field_matches(field_sel, obj)
            )

        return visible

    @staticmethod
    def _watch_line(kind: str, obj: dict[str, Any]) -> bytes:
        return (json.dumps({"type": kind, "object": obj}) + "\n").encode()

    def _watch_start(self, since: str | None, visible: Callable[[str, dict[str, Any]], bool]) -> tuple[list[bytes], int]:
        """Under the lock: the ADDED lines a watch from `since` begins with (all it may see, when it
        names no resourceVersion) and the resourceVersion it then continues from."""
        if since in (None, "", "0"):
            lines = [self._watch_line("ADDED", copy.deepcopy(o)) for (r, _, _), o in sorted(self.store.items()) if visible(r, o)]
            return lines, self.resource_version
        return [], int(since)

    def _watch_pending(self, cursor: int, visible: Callable[[str, dict[str, Any]], bool]) -> tuple[list[bytes], int]:
        """Under the lock: the event lines after `cursor` the watch may see, and the new cursor."""
        latest = self.events[-1][0] if self.events else cursor
        pending = [self._watch_line(t, copy.deepcopy(o)) for rv, t, r, o in self.events if rv > cursor and visible(r, o)]
        return pending, max(cursor, latest)

    # ---- internals -------------------------------------------------------------------------------
    def _invalid(self, res: str, body: dict[str, Any]) -> str | None:
        name = body["metadata"].get("name") or ""
        if not name:
            return "metadata.name: Required value: name or generateName is required"
        pattern, limit = (_DNS_LABEL, 63) if res in ("jobs", "pods") else (_DNS_1035, 63) if res == "services" else (_DNS_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            return f"metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (at most {limit})"
        if self.validate and res in ("jobs", "secrets", "services"):
            import kubernetes_validate

            candidate = dict(body, kind=RESOURCES[res][1], apiVersion=RESOURCES[res][2])
            try:
                kubernetes_validate.validate(candidate, self.k8s_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
        return None

    def _fill(self, res: str, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
        meta = obj.setdefault("metadata", {})
        meta["uid"] = current["metadata"]["uid"] if current else meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = current["metadata"]["creationTimestamp"] if current else meta.get("creationTimestamp") or now_rfc3339()
        meta["generation"] = (current["metadata"].get("generation", 0) + 1) if current else 1
        obj.setdefault("kind", RESOURCES[res][1])
        obj.setdefault("apiVersion", RESOURCES[res][2])
        if res == "secrets":
            data = dict(obj.get("data") or {})
            for k, v in (obj.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
            obj.setdefault("type", "Opaque")
        if res == "jobs":
            obj.setdefault("status", {})
            spec = obj.setdefault("spec", {})
            uid = meta["uid"]
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
            tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update(
                {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}
            )

    def _write(self, key: tuple[str, str, str], obj: dict[str, Any], kind: str) -> dict[str, Any]:
        with self._changed:
            self.resource_version += 1
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            self.store[key] = obj
            self.events.append((self.resource_version, kind, key[0], copy.deepcopy(obj)))
            self._changed.notify_all()
            return obj

    def _delete(self, key: tuple[str, str, str], policy: str) -> bool:
        with self._changed:
            obj = self.store.pop(key, None)
            if obj is None:
                return False
            self.resource_version += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.resource_version)
            self.events.append((self.resource_version, "DELETED", key[0], gone))
            uid = obj["metadata"]["uid"]
            dependents = [k for k, o in self.store.items() if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])]
            for dep in dependents:
                if policy == "Orphan":
                    o = copy.deepcopy(self.store[dep])
                    o["metadata"]["ownerReferences"] = [r for r in o["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    if not o["metadata"]["ownerReferences"]:
                        del o["metadata"]["ownerReferences"]
                    self._write(dep, o, "MODIFIED")
                else:
                    self._delete(dep, policy)
            self._changed.notify_all()
            return True
