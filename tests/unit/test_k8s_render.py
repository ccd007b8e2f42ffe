"""Rendering a run and the cluster setup: strict schema checks for Kubernetes 1.29-1.37 and Kueue's CRDs."""
from __future__ import annotations

import json

import pytest
import yaml

from backend.engines.kubernetes import render, setup
from backend.errors import BadInput
from tests.fixtures import k8s_objects as fx

kubernetes_validate = pytest.importorskip("kubernetes_validate")


def _validate_all(objs):
    for obj in objs:
        for version in fx.K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def _env(container):
    return {e["name"]: e for e in container["env"]}


def test_single_learner_job_is_valid_and_queued_suspended():
    objs = render.render_submission(fx.manifest(), "training-ab12cd34", fx.profile(), fx.config(), user="ada")
    _validate_all(objs)
    job, wrapper, secret = objs
    assert [o["kind"] for o in objs] == ["Job", "ConfigMap", "Secret"]
    assert "storing results" in wrapper["data"]["wrapper.sh"]
    assert "storing results" not in json.dumps(job)  # the Job stays small; the script lives beside it
    meta, spec = job["metadata"], job["spec"]
    assert meta["labels"][render.QUEUE_LABEL] == "team-a-queue"
    assert meta["labels"][render.PRIORITY_LABEL] == "high"
    assert meta["labels"][render.LABEL_RUN] == "training-ab12cd34"
    assert meta["labels"][render.LABEL_MANIFEST] == "mnist-CNN-v2"  # label-safe form
    assert meta["annotations"][render.ANN_NAME] == "mnist CNN (v2)"  # the exact name kept aside
    assert spec["suspend"] is True and spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["activeDeadlineSeconds"] == 5400 + 900 + 120
    assert "completionMode" not in spec


def test_pod_shape_resources_and_security():
    job = render.render_submission(fx.manifest(), "training-ab12cd34", fx.profile(), fx.config())[0]
    pod = job["spec"]["template"]["spec"]
    learner, = pod["containers"]
    loader, = pod["initContainers"]
    assert learner["image"] == "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
    assert loader["image"] == "rclone/rclone:1.68"
    assert learner["resources"]["requests"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2",
                                                "ephemeral-storage": "20Gi"}
    assert learner["resources"]["limits"]["nvidia.com/gpu"] == "2"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    expr, = terms[0]["matchExpressions"]
    assert expr["key"] == "nvidia.com/gpu.product" and "NVIDIA-H100-80GB-HBM3" in expr["values"]
    for c in (learner, loader):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == 120
    # the learner's entrypoint is the sh wrapper, mounted from the run's ConfigMap
    assert learner["command"] == ["/bin/sh", "/dlaas/wrapper.sh"]
    wrapper_vol = next(v for v in pod["volumes"] if v["name"] == "wrapper")
    assert wrapper_vol["configMap"]["name"] == "training-ab12cd34-wrapper"
    assert "copyto" in loader["command"][2] and "_submitted_code/model.zip" in loader["command"][2]


def test_env_follows_design_and_secrets_are_references_only():
    objs = render.render_submission(
        fx.manifest(), "training-ab12cd34", fx.profile(), fx.config(), params={"lr": 0.01, "batch-size": 64},
        reveal_secrets=True,
    )
    job, _, secret = objs
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    for name in ("DATA_DIR", "RESULT_DIR", "MODEL_DIR", "LOG_DIR", "JOB_STATE_DIR", "CHECKPOINT_DIR",
                 "TRAINING_ID", "LEARNER_ID", "NUM_LEARNERS", "GPU_COUNT"):
        assert name in env, name
    assert env["TRAINING_ID"]["value"] == "training-ab12cd34"
    assert env["MODE"]["value"] == "fast"
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "training-ab12cd34-secrets", "key": "env-wandb"}
    assert env["HP_LR"]["value"] == "0.01" and env["HP_BATCH_SIZE"]["value"] == "64"
    assert json.loads(env["DLAAS_PARAMS_JSON"]["value"]) == {"batch-size": 64, "lr": 0.01}
    assert "secretKeyRef" in env["RCLONE_CONFIG_DLAAS_SECRET_ACCESS_KEY"]["valueFrom"]
    job_text = json.dumps(job)
    for value in ("s3cr3t-value-never-in-a-job", "AKIDEXAMPLE", "wandb-token-value"):
        assert value not in job_text
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-value-never-in-a-job"
    assert secret["stringData"]["env-wandb"] == "wandb-token-value"
    owner, = secret["metadata"]["ownerReferences"]
    assert owner["kind"] == "Job" and owner["name"] == "training-ab12cd34"


def test_profile_secret_is_used_when_named():
    m = fx.manifest(env={})
    objs = render.render_submission(m, "training-ab12cd34", fx.profile("shared"), fx.config())
    assert [o["kind"] for o in objs] == ["Job", "ConfigMap"]  # no per-run Secret needed
    env = _env(objs[0]["spec"]["template"]["spec"]["containers"][0])
    assert env["RCLONE_CONFIG_DLAAS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-a-s3"
    _validate_all(objs)


def test_multi_learner_is_indexed_with_headless_service():
    objs = render.render_submission(fx.manifest(learners=4), "training-ab12cd34", fx.profile(), fx.config(),
                                    job_uid="6f1c2b3a-0000-4000-8000-000000000001")
    _validate_all(objs)
    job = objs[0]
    svc = next(o for o in objs if o["kind"] == "Service")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    env = _env(pod["containers"][0])
    assert env["MASTER_ADDR"]["value"] == "training-ab12cd34-0.training-ab12cd34"
    assert env["WORLD_SIZE"]["value"] == "4" and "fieldRef" in env["RANK"]["valueFrom"]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "6f1c2b3a-0000-4000-8000-000000000001"


def test_cpu_only_run_and_no_max_duration():
    m = fx.manifest(gpus=0, gpu_type=None, cpus=0.5, memory="1.5GB", max_duration=None, env={})
    job, wrapper = render.render_submission(m, "training-00000000", fx.profile("shared"), fx.config())
    _validate_all([job, wrapper])
    pod = job["spec"]["template"]["spec"]
    assert "affinity" not in pod and "tolerations" not in pod
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "1500000000", "ephemeral-storage": "20Gi"}
    assert "activeDeadlineSeconds" not in job["spec"]


@pytest.mark.parametrize("memory,expected", [
    ("512MB", "512M"), ("512MiB", "512Mi"), ("4GiB", "4Gi"), ("2Gb", "2G"), ("1.5GiB", "1610612736"), ("1TB", "1T"),
])
def test_memory_units_map_to_quantities(memory, expected):
    assert render.memory_quantity(memory) == expected


@pytest.mark.parametrize("bad", ["4 gigs", "4", "4KB"])
def test_bad_memory_is_an_error(bad):
    with pytest.raises(BadInput, match="memory"):
        render.memory_quantity(bad)


def test_label_values_are_safe():
    assert render.label_value("a/b c") == "a-b-c"
    assert render.label_value("--x--") == "x"
    assert len(render.label_value("x" * 100)) == 63
    assert render.label_value("!!!") is None


def test_unmapped_framework_and_unknown_priority_are_refused():
    with pytest.raises(BadInput, match="framework 'mxnet' has no image"):
        render.render_submission(fx.manifest(framework={"name": "mxnet", "command": "x"}),
                                 "training-ab12cd34", fx.profile(), fx.config())
    with pytest.raises(BadInput, match="priority 'urgent'"):
        render.render_submission(fx.manifest(priority="urgent"), "training-ab12cd34", fx.profile(), fx.config())
    with pytest.raises(BadInput, match="run id"):
        render.render_submission(fx.manifest(), "Training_1", fx.profile(), fx.config())


def test_dry_run_yaml_masks_secrets_and_parses_back():
    text = render.dry_run_yaml(fx.manifest(), "training-ab12cd34", fx.profile(), fx.config(), user="ada")
    assert "s3cr3t-value-never-in-a-job" not in text and "wandb-token-value" not in text
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["Job", "ConfigMap", "Secret"]
    assert set(docs[2]["stringData"].values()) == {render.MASKED}
    _validate_all(docs)


def test_cluster_setup_objects_are_valid():
    objs = setup.cluster_objects(namespace="team-a", queue="team-a-queue", gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3",
                                 priorities={"high": 1000, "normal": 0, "low": -100})
    kinds = [o["kind"] for o in objs]
    assert kinds.count("WorkloadPriorityClass") == 3
    cq = next(o for o in objs if o["kind"] == "ClusterQueue")
    gpu = [r for g in cq["spec"]["resourceGroups"] for r in g["flavors"][0]["resources"] if r["name"] == "nvidia.com/gpu"]
    assert gpu[0]["nominalQuota"] == 8
    role = next(o for o in objs if o["kind"] == "Role")
    vis = [r for r in role["rules"] if r["apiGroups"] == ["visibility.kueue.x-k8s.io"]]
    assert vis[0]["resources"] == ["localqueues/pendingworkloads"] and set(vis[0]["verbs"]) == {"get", "list"}
    _validate_all([o for o in objs if not o["apiVersion"].startswith("kueue.x-k8s.io")])


def test_kueue_objects_match_the_crds():
    if not fx.KUEUE_CRDS.is_dir():
        pytest.skip(f"Kueue CRDs not found at {fx.KUEUE_CRDS} (the shared data folder is absent)")
    pytest.importorskip("jsonschema")
    objs = setup.cluster_objects(namespace="team-a", queue="q", gpus=1, gpu_product=None, priorities={"normal": 0})
    kueue = [o for o in objs if o["apiVersion"].startswith("kueue.x-k8s.io")]
    assert {o["kind"] for o in kueue} == {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"}
    for obj in kueue:
        fx.validate_kueue(obj)
    import jsonschema

    broken = dict(kueue[2], spec={"clusterQueue": "x", "bogus": 1})  # the strict check does refuse strays
    with pytest.raises(jsonschema.ValidationError):
        fx.validate_kueue(broken)


def test_owned_objects_carry_no_block_owner_deletion():
    """OpenShift's OwnerReferencesPermissionEnforcement refuses blockOwnerDeletion without update on
    jobs/finalizers; the owner reference alone gives garbage collection."""
    objs = render.render_submission(fx.manifest(learners=2), "training-ab12cd34", fx.profile(), fx.config(),
                                    job_uid="1234")
    for obj in objs[1:]:
        ref, = obj["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "batch/v1", "kind": "Job", "name": "training-ab12cd34", "uid": "1234"}


def test_priority_label_is_the_priority_class_setup_creates():
    from backend.config import parse_config
    from backend.engines.kubernetes.runview import run_from_job

    config = parse_config(fx.CONFIG_TOML + '\n[priorities]\n"Urgent Fix" = 5000\n', "c.toml")
    job = render.render_submission(fx.manifest(priority="Urgent Fix"), "training-ab12cd34", fx.profile(), config)[0]
    label = job["metadata"]["labels"][render.PRIORITY_LABEL]
    names = {o["metadata"]["name"] for o in setup.cluster_objects(namespace="team-a", queue="q", gpus=1, gpu_product=None,
                                                                  priorities=config.all_priorities())
             if o["kind"] == "WorkloadPriorityClass"}
    assert label == "urgent-fix" and label in names
    assert run_from_job(job, config).priority == "Urgent Fix"  # read back as the config names it
    _validate_all([job])


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
def test_setup_writes_the_kueue_version_asked_and_keeps_cpu_runs_off_gpu_nodes(version):
    if not fx.KUEUE_CRDS.is_dir():
        pytest.skip(f"Kueue CRDs not found at {fx.KUEUE_CRDS}")
    pytest.importorskip("jsonschema")
    objs = setup.cluster_objects(namespace="team-a", queue="q", gpus=4, gpu_product="NVIDIA-H100-80GB-HBM3",
                                 priorities={"normal": 0}, kueue_api=version)
    kueue = [o for o in objs if o["apiVersion"].startswith("kueue.x-k8s.io")]
    assert {o["apiVersion"] for o in kueue} == {f"kueue.x-k8s.io/{version}"}
    for obj in kueue:
        fx.validate_kueue(obj)
    _validate_all([o for o in objs if o not in kueue])
    cq = next(o for o in objs if o["kind"] == "ClusterQueue")
    cpu_group, gpu_group = cq["spec"]["resourceGroups"]
    # every resource a run requests is covered (ephemeral-storage too), or Kueue would never admit it
    assert cpu_group["coveredResources"] == ["cpu", "memory", "ephemeral-storage"]
    assert gpu_group["coveredResources"] == ["nvidia.com/gpu"]
    job = render.render_submission(fx.manifest(), "training-ab12cd34", fx.profile(), fx.config())[0]
    requested = set(job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"])
    requested |= set(job["spec"]["template"]["spec"]["initContainers"][0]["resources"]["requests"])
    assert requested <= set(cpu_group["coveredResources"]) | set(gpu_group["coveredResources"])
    flavors = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ResourceFlavor"}
    # a CPU-only run is admitted on the plain flavor alone: no GPU node label is injected into it
    assert flavors[cpu_group["flavors"][0]["name"]]["spec"] == {}
    assert flavors[gpu_group["flavors"][0]["name"]]["spec"]["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    with pytest.raises(BadInput, match="kueue-api"):
        setup.cluster_objects(namespace="a", queue="q", gpus=1, gpu_product=None, priorities={}, kueue_api="v1alpha1")


def test_work_is_sized_from_the_data_and_requested():
    """/work holds the data, the model and the results: its emptyDir has a sizeLimit and the learner
    requests it as ephemeral-storage, so the scheduler picks a node with the disk."""
    spec = render.RunSpec("training-ab12cd34", data_bytes=50 * 1024 ** 3 + 1, model_bytes=10 * 1024 ** 2)
    job = render.render_job(fx.manifest(), spec, fx.profile(), fx.config())
    pod = job["spec"]["template"]["spec"]
    work = next(v for v in pod["volumes"] if v["name"] == "work")
    assert work["emptyDir"] == {"sizeLimit": "71Gi"}  # 50 GiB + 1 byte + 3 x 10 MiB -> 51, + 20 headroom
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "71Gi"
    _validate_all([job])
    prof = fx.profile()
    prof = prof.model_copy(update={"kubernetes": prof.kubernetes.model_copy(update={"request_work_storage": False})})
    job = render.render_job(fx.manifest(), spec, prof, fx.config())
    assert "ephemeral-storage" not in job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert job["spec"]["template"]["spec"]["volumes"][0]["emptyDir"] == {"sizeLimit": "71Gi"}


def test_disruptions_are_ignored_and_storing_is_a_readiness_probe():
    job = render.render_submission(fx.manifest(), "training-ab12cd34", fx.profile(), fx.config())[0]
    rule, = job["spec"]["podFailurePolicy"]["rules"]
    assert rule == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    probe = job["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["exec"]["command"][-1] == "test ! -e /work/state/.wrapper/storing"
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 15 and probe["timeoutSeconds"] >= 5
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert probe["exec"]["command"][-1].endswith(env["JOB_STATE_DIR"] + "/.wrapper/storing")
    assert '"$flags/storing"' in render.wrapper_script() and 'flags="$JOB_STATE_DIR/.wrapper"' in render.wrapper_script()
def test_the_learner_mounts_the_training_data_read_only():
    objs = render.render_submission(fx.manifest(), "training-ab12cd34", fx.profile(), fx.config())
    _validate_all(objs)
    pod = objs[0]["spec"]["template"]["spec"]
    learner, = pod["containers"]
    loader, = pod["initContainers"]
    data_dir = _env(learner)["DATA_DIR"]["value"]
    at_data = [m for m in learner["volumeMounts"] if m["mountPath"] == data_dir]
    assert at_data == [{"name": "data", "mountPath": data_dir, "readOnly": True}]
    # The loader copies the data into that same volume, writable to it alone.
    loads, = [m for m in loader["volumeMounts"] if m["name"] == "data"]
    assert loads["mountPath"] == data_dir and not loads.get("readOnly")
    assert "rclone copy " in loader["command"][2] and f" {data_dir}\n" in loader["command"][2]
    vol, = [v for v in pod["volumes"] if v["name"] == "data"]
    work, = [v for v in pod["volumes"] if v["name"] == "work"]
    assert vol == {"name": "data", "emptyDir": {"sizeLimit": work["emptyDir"]["sizeLimit"]}}
    # Nothing else the learner mounts is at or under DATA_DIR but the read-only volume.
    under = [m for m in learner["volumeMounts"] if (m["mountPath"] + "/").startswith(data_dir + "/")]
    assert under == at_data
