"""JSON over the Kubernetes API with the official client's connection and auth, objects as plain dicts.

Everything the engine does (Jobs, Pods, Workloads, the Kueue visibility API, watches, logs) goes
through `KubeApi.request`/`stream`, built on `ApiClient.param_serialize` + `call_api`: the
kubernetes 37 client's typed `call_api(response_type=...)` path raises TypeError for raw paths, and
plain dicts are what `render.py` produces anyway. The `kubernetes` package is imported here only, lazily.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from backend.errors import EngineError, NotFound

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"  # RFC 7386: the fields given replace theirs


class KubeError(EngineError):
    """An API answer that is not 2xx; `status` and `reason` come from the Status object."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeNotFound(KubeError, NotFound):
    pass


class KubeForbidden(KubeError):
    pass


class KubeGone(KubeError):
    """410: the resourceVersion is too old; the caller lists again."""


def _message(status: int, method: str, path: str, body: bytes) -> KubeError:
    reason, detail = "", ""
    try:
        st = json.loads(body or b"{}")
        reason, detail = st.get("reason", "") or "", st.get("message", "") or ""
    except (ValueError, AttributeError):
        detail = body[:200].decode("utf-8", "replace") if body else ""
    what = f"{method} {path.split('?')[0]}"
    if status in (401, 403):
        hint = ("the cluster refused this user; check the kubeconfig context, and ask an admin to apply "
                "`dlaas-tui cluster setup` (it grants the Role this needs)")
        return KubeForbidden(f"forbidden ({status}): {what}: {detail or reason}; {hint}", status=status, reason=reason)
    if status == 404:
        return KubeNotFound(f"not found: {what}{': ' + detail if detail else ''}", status=status, reason=reason)
    if status == 410:
        return KubeGone(f"gone: {what}: {detail or 'resource version too old'}", status=status, reason=reason)
    return KubeError(f"{what} failed ({status} {reason}): {detail}".rstrip(": "), status=status, reason=reason)


class KubeApi:
    """A thin JSON transport. `api_client` is a `kubernetes.client.ApiClient`."""

    def __init__(self, api_client: Any, *, timeout: float = 30) -> None:
        self.api_client = api_client
        self.timeout = timeout

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        from kubernetes import config as kconfig

        try:
            api_client = kconfig.new_client_from_config(config_file=kubeconfig, context=context)
        except kconfig.ConfigException as exc:
            try:  # running inside a pod (the agent on the cluster)
                kconfig.load_incluster_config()
                from kubernetes import client

                api_client = client.ApiClient()
            except kconfig.ConfigException:
                raise EngineError(f"cannot load kubeconfig{f' context {context!r}' if context else ''}: {exc}") from None
        return cls(api_client)

    @classmethod
    def for_host(cls, host: str) -> KubeApi:
        """An unauthenticated client for a test server on 127.0.0.1."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = host.rstrip("/")
        return cls(client.ApiClient(cfg))

    def _call(self, method: str, path: str, query: dict[str, Any] | None, body: Any, content_type: str,
              timeout: Any) -> Any:
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": JSON, "Content-Type": content_type}
        m, url, hdrs, b, _ = self.api_client.param_serialize(method, path, query_params=params,
                                                             header_params=headers, body=body)
        try:
            return self.api_client.call_api(m, url, header_params=hdrs, body=b, _request_timeout=timeout)
        except EngineError:
            raise
        except Exception as exc:  # connection refused, TLS, DNS: one line, never a traceback
            raise KubeError(f"{method} {path}: cannot reach the cluster: {exc}", status=0) from None

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = JSON) -> dict[str, Any]:
        resp = self._call(method, path, query, body, content_type, self.timeout)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise _message(resp.status, method, path, data)
        if not data:
            return {}
        try:
            out = json.loads(data)
        except ValueError:
            raise KubeError(f"{method} {path}: the answer is not JSON", status=resp.status) from None
        return out if isinstance(out, dict) else {"items": out}

    def text(self, path: str, *, query: dict[str, Any] | None = None) -> str:
        resp = self._call("GET", path, query, None, JSON, self.timeout)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise _message(resp.status, "GET", path, data)
        return data.decode("utf-8", "replace")

    def stream_lines(self, path: str, *, query: dict[str, Any] | None = None, read_timeout: float | None = None
                     ) -> Iterator[str]:
        """Lines of a streaming answer (a watch, or a followed log); ends when the server closes it."""
        resp = self._call("GET", path, query, None, JSON, (self.timeout, read_timeout))
        raw = resp.response
        if not 200 <= resp.status < 300:
            raise _message(resp.status, "GET", path, raw.read())
        pending = b""
        chunks = raw.stream(4096, decode_content=True)
        try:
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:  # urllib3's ProtocolError, ReadTimeoutError...: one KubeError
                    raise KubeError(f"GET {path}: the stream broke: {exc}", status=0) from None
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        finally:
            raw.release_conn()

    def close(self) -> None:
        try:
            self.api_client.close()
        except Exception:  # closing twice, or a pool already gone
            pass


# -- paths -------------------------------------------------------------------------------------------
def jobs_path(ns: str, name: str | None = None) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs" + (f"/{name}" if name else "")


def pods_path(ns: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{ns}/pods" + (f"/{name}" if name else "")


def secrets_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/secrets"


def services_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/services"


def workloads_path(ns: str, version: str = "v1beta2") -> str:
    return f"/apis/kueue.x-k8s.io/{version}/namespaces/{ns}/workloads"


def nodes_path(name: str | None = None) -> str:
    return "/api/v1/nodes" + (f"/{name}" if name else "")


def pending_workloads_path(ns: str, queue: str, version: str = "v1beta2") -> str:
    return f"/apis/visibility.kueue.x-k8s.io/{version}/namespaces/{ns}/localqueues/{queue}/pendingworkloads"


def path_for(obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace", "default")
    return {
        "Job": jobs_path(ns),
        "Secret": secrets_path(ns),
        "Service": services_path(ns),
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
    }[obj["kind"]]
