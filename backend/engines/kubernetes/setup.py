"""`dlaas-tui cluster setup`: the Kueue and RBAC objects a namespace needs, as YAML for `kubectl apply -f -`.

What it sets up, for one team namespace:
  - the Namespace;
  - a ResourceFlavor for the GPUs (with a product, its nodeLabels select those nodes; Kueue injects
    them on admission) and a plain one for cpu and memory, in separate resource groups, so a run
    that asks for no GPU is not pinned to GPU nodes;
  - a ClusterQueue whose nominalQuota of `nvidia.com/gpu` is the tier's GPUs (cpu and memory are left
    generous: the GPU is the scarce thing), and a LocalQueue pointing at it;
  - WorkloadPriorityClasses from the config's [priorities] (cluster-scoped: every namespace's setup
    writes the same names, so keep [priorities] the same across teams of one cluster);
  - a Role + RoleBinding for the users' group: Jobs, Pods, logs, Events, Secrets, Services,
    ConfigMaps, Workloads, and get/list on `localqueues/pendingworkloads` in
    visibility.kueue.x-k8s.io (queue positions).
Kueue objects are written at `kueue_api` (v1beta2 by default; v1beta1 for Kueue before ~0.16;
`cluster setup --kueue-api auto` asks the cluster which it serves).
"""
from __future__ import annotations

import re
from typing import Any

from backend.errors import BadInput

KUEUE_API = "kueue.x-k8s.io/v1beta2"
KUEUE_VERSIONS = ("v1beta2", "v1beta1")
CPU_FLAVOR = "default-cpu"


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not name:
        raise BadInput(f"{text!r} gives no valid Kubernetes name")
    return name


def cluster_objects(
    *,
    namespace: str,
    queue: str,
    gpus: int,
    gpu_product: str | None,
    priorities: dict[str, int],
    gpu_product_label: str = "nvidia.com/gpu.product",
    group: str | None = None,
    cpu_quota: str = "256",
    memory_quota: str = "2Ti",
    storage_quota: str = "100Ti",
    kueue_api: str = "v1beta2",
) -> list[dict[str, Any]]:
    if gpus < 0:
        raise BadInput("--gpus must be 0 or more")
    if kueue_api not in KUEUE_VERSIONS:
        raise BadInput(f"--kueue-api {kueue_api!r}: expected one of {', '.join(KUEUE_VERSIONS)}")
    api_version = f"kueue.x-k8s.io/{kueue_api}"
    cluster_queue = _dns_name(f"{namespace}-{queue}")
    flavor = _dns_name(f"gpu-{gpu_product}") if gpu_product else "default-gpu"
    flavor_obj: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": "ResourceFlavor",
        "metadata": {"name": flavor},
        "spec": {},
    }
    if gpu_product:
        flavor_obj["spec"]["nodeLabels"] = {gpu_product_label: gpu_product}
        flavor_obj["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {"dlaas.io/managed": "true"}}},
        flavor_obj,
        {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": {"name": CPU_FLAVOR}, "spec": {}},
        {
            "apiVersion": api_version,
            "kind": "ClusterQueue",
            "metadata": {"name": cluster_queue},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "queueingStrategy": "BestEffortFIFO",
                "resourceGroups": [
                    # ephemeral-storage: each run requests its /work; Kueue holds back a workload
                    # that requests a resource its ClusterQueue does not cover
                    {"coveredResources": ["cpu", "memory", "ephemeral-storage"],
                     "flavors": [{"name": CPU_FLAVOR, "resources": [
                         {"name": "cpu", "nominalQuota": cpu_quota},
                         {"name": "memory", "nominalQuota": memory_quota},
                         {"name": "ephemeral-storage", "nominalQuota": storage_quota}]}]},
                    {"coveredResources": ["nvidia.com/gpu"],
                     "flavors": [{"name": flavor, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": gpus}]}]},
                ],
                "preemption": {"withinClusterQueue": "LowerPriority"},
            },
        },
        {
            "apiVersion": api_version,
            "kind": "LocalQueue",
            "metadata": {"name": queue, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue},
        },
    ]
    for name, value in sorted(priorities.items(), key=lambda kv: -kv[1]):
        objs.append({
            "apiVersion": api_version,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": priority_class_name(name)},
            "value": int(value),
            "description": f"dlaas-tui priority {name!r}",
        })
    role = "dlaas-tui-user"
    objs.append({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": role, "namespace": namespace},
        "rules": [
            {"apiGroups": ["batch"], "resources": ["jobs"],
             "verbs": ["get", "list", "watch", "create", "delete", "patch"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": ["get", "list", "watch"]},
            # (no `update` on jobs/finalizers: the owned objects carry no blockOwnerDeletion, which
            # OwnerReferencesPermissionEnforcement, on by default on OpenShift, would refuse without it)
            {"apiGroups": [""], "resources": ["secrets", "services", "configmaps"], "verbs": ["get", "create", "delete"]},
            {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads", "localqueues"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["visibility.kueue.x-k8s.io"], "resources": ["localqueues/pendingworkloads"],
             "verbs": ["get", "list"]},
        ],
    })
    objs.append({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": role, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group or f"{namespace}-users"}],
    })
    # Node labels and GPU products are cluster-scoped: reading them lets the TUI name the GPUs.
    objs.append({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"dlaas-tui-{namespace}-nodes"},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
            {"apiGroups": ["kueue.x-k8s.io"], "resources": ["resourceflavors", "clusterqueues", "workloadpriorityclasses"],
             "verbs": ["get", "list"]},
        ],
    })
    objs.append({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"dlaas-tui-{namespace}-nodes"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"dlaas-tui-{namespace}-nodes"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group or f"{namespace}-users"}],
    })
    return objs


def priority_class_name(priority: str) -> str:
    """The WorkloadPriorityClass of a [priorities] name: the Job's priority label uses the same."""
    from .render import priority_class

    return priority_class(priority)


def cluster_yaml(objs: list[dict[str, Any]]) -> str:
    import yaml

    return "# dlaas-tui cluster setup: kubectl apply -f -\n" + yaml.safe_dump_all(objs, sort_keys=False)
