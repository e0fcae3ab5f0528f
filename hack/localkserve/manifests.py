"""From an InferenceService predictor and its ServingRuntime to a revision's Deployment.

Pure functions. The pod runs the ServingRuntime's container as KServe merges it with the
predictor's `model` (image, command and args with `{{.Name}}`-style fields filled in, the
model's env and resources on top of the runtime's), with two local differences:

- No storage initializer: the runtime downloads the model itself, so `--model_dir` is
  dropped from the args and `--storage_uri=<storageUri>` added (docs/serving-contract.md).
- The container is told its HTTP port (`--http_port=<containerPort>`) when the runtime's
  args do not say it, so it listens on the port the gateway will use; and,
  unless the runtime has one, it gets the TCP readiness probe Knative gives every revision,
  so a pod is ready only once its server listens.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from . import revisions

Obj = dict[str, Any]

API = "serving.kserve.io/v1beta1"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
REVISION_LABEL = "localkserve.slipway.dev/revision"
MANAGED_BY = ("app.kubernetes.io/managed-by", "localkserve")
COMPONENT_LABEL = "slipway.dev/component"
PREDICTOR_ANNOTATION = "localkserve.slipway.dev/predictor"
# The predictor's `logger`, carried on the pod template as KServe carries it in the agent sidecar's args:
# changing it makes a new revision, and each revision logs where its own spec said.
LOGGER_ANNOTATION = "localkserve.slipway.dev/logger"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
CONTAINER = "kserve-container"
DEFAULT_PORT = 8080

# Pod-level fields of a ServingRuntime and of a predictor (KServe's PodSpec inline) carried
# to the pod (volumes are merged by name).
RUNTIME_POD_FIELDS = ("nodeSelector", "tolerations", "affinity", "imagePullSecrets")
POD_FIELDS = ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName")
_TEMPLATE = re.compile(r"\{\{\s*\.(Name|Namespace|Labels\.([\w./-]+)|Annotations\.([\w./-]+))\s*\}\}")


class RuntimeProblem(Exception):
    """No usable ServingRuntime: `reason` is KServe's FailureReason for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def find_runtime(predictor: Obj, namespaced: Sequence[Obj], cluster: Sequence[Obj]) -> Obj:
    """The ServingRuntime (namespace first) or ClusterServingRuntime for the predictor: the
    one its model names, else the first with autoSelect that supports its model format and
    protocol."""
    model = predictor.get("model") or {}
    name = model.get("runtime")
    if name:
        found = next((r for r in [*namespaced, *cluster] if r["metadata"]["name"] == name), None)
        if found is None:
            raise RuntimeProblem("RuntimeNotRecognized", f"ServingRuntime {name} not found")
        if (found.get("spec") or {}).get("disabled"):
            raise RuntimeProblem("RuntimeDisabled", f"ServingRuntime {name} is disabled")
        return found
    fmt = (model.get("modelFormat") or {}).get("name")
    protocol = model.get("protocolVersion") or "v1"
    for runtime in [*namespaced, *cluster]:
        spec = runtime.get("spec") or {}
        formats = [f for f in spec.get("supportedModelFormats") or [] if f.get("name") == fmt and f.get("autoSelect")]
        if formats and not spec.get("disabled") and protocol in (spec.get("protocolVersions") or ["v1"]):
            return runtime
    raise RuntimeProblem("NoSupportingRuntime", f"no ServingRuntime supports model format {fmt} ({protocol})")


def fill(text: str, isvc: Obj) -> str:
    """KServe's template fields in runtime args: {{.Name}}, {{.Namespace}}, {{.Labels.k}},
    {{.Annotations.k}} of the InferenceService."""
    meta = isvc["metadata"]

    def value(m: re.Match[str]) -> str:
        if m.group(1) == "Name":
            return str(meta["name"])
        if m.group(1) == "Namespace":
            return str(meta.get("namespace", "default"))
        if m.group(2):
            return str((meta.get("labels") or {}).get(m.group(2), ""))
        return str((meta.get("annotations") or {}).get(m.group(3), ""))

    return _TEMPLATE.sub(value, text)


def _args(args: Sequence[str], storage_uri: str | None, port: int) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--model_dir":
            skip = True  # its value follows
        elif not arg.startswith("--model_dir="):
            out.append(arg)
    if storage_uri and not any(a == "--storage_uri" or a.startswith("--storage_uri=") for a in out):
        out.append(f"--storage_uri={storage_uri}")
    if not any(a == "--http_port" or a.startswith("--http_port=") for a in out):
        out.append(f"--http_port={port}")
    return out


def _merge_env(base: Sequence[Obj], top: Sequence[Obj]) -> list[Obj]:
    """Merge lists of named items (env vars, volumes): `top` wins by name."""
    names = {e["name"] for e in top}
    return [e for e in base if e["name"] not in names] + list(top)


def _merge_resources(base: Obj, top: Obj) -> Obj:
    out = {k: dict(v) for k, v in base.items() if isinstance(v, dict)}
    for key, value in top.items():
        if isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
    return out


def container(isvc: Obj, predictor: Obj, runtime: Obj) -> Obj:
    """The runtime's first container merged with the predictor's model, as the pod runs it."""
    model = predictor.get("model") or {}
    c: Obj = copy.deepcopy(((runtime.get("spec") or {}).get("containers") or [{}])[0])
    c["name"] = CONTAINER
    c.setdefault("ports", [{"name": "http1", "containerPort": DEFAULT_PORT, "protocol": "TCP"}])
    port = int(c["ports"][0]["containerPort"])
    if c.get("command"):
        c["command"] = [fill(a, isvc) for a in c["command"]]
    c["args"] = _args([fill(a, isvc) for a in c.get("args") or []], model.get("storageUri"), port)
    env = [{**e, "value": fill(e["value"], isvc)} if "value" in e else e for e in c.get("env") or []]
    c["env"] = _merge_env(env, model.get("env") or [])
    c["resources"] = _merge_resources(c.get("resources") or {}, model.get("resources") or {})
    if model.get("image"):
        c["image"] = model["image"]
    c.setdefault("readinessProbe", {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 3})
    return c


def revision(isvc: Obj, predictor: Obj, runtime: Obj) -> tuple[str, Obj]:
    """(revision name, Deployment) for one predictor. The name hashes everything the
    Deployment runs (pod template and replicas), nothing else: same spec, same revision."""
    meta = isvc["metadata"]
    runtime_spec = runtime.get("spec") or {}
    # The runtime's pod-level fields first (its volumes back its container's volumeMounts),
    # the predictor's on top; volumes merged by name.
    pod: Obj = {k: copy.deepcopy(runtime_spec[k]) for k in RUNTIME_POD_FIELDS if k in runtime_spec}
    pod.update({k: copy.deepcopy(predictor[k]) for k in POD_FIELDS if k in predictor})
    volumes = _merge_env(runtime_spec.get("volumes") or [], predictor.get("volumes") or [])
    if volumes:
        pod["volumes"] = copy.deepcopy(volumes)
    pod["containers"] = [container(isvc, predictor, runtime)]
    labels = {**(runtime_spec.get("labels") or {}), **(predictor.get("labels") or {})}
    template: Obj = {
        "metadata": {
            "labels": {**labels, COMPONENT_LABEL: "predictor", ISVC_LABEL: meta["name"]},
            "annotations": {**(runtime_spec.get("annotations") or {}), **(predictor.get("annotations") or {})},
        },
        "spec": pod,
    }
    logger = predictor.get("logger") or {}
    if logger.get("url"):
        sink = {"url": logger["url"], "mode": logger.get("mode") or "all"}
        template["metadata"]["annotations"][LOGGER_ANNOTATION] = json.dumps(sink, sort_keys=True)
    replicas = max(1, int(predictor.get("minReplicas") or 1))  # no scale to zero here
    name = revisions.revision_name(meta["name"], revisions.digest({"template": template, "replicas": replicas}))
    return name, deployment(isvc, name, template, replicas, predictor.get("name") or "")


def sink_of(deployment: Obj) -> tuple[str, str] | None:
    """(url, mode) of a revision's payload logger, from its Deployment's pod template."""
    template = (deployment.get("spec") or {}).get("template") or {}
    raw = ((template.get("metadata") or {}).get("annotations") or {}).get(LOGGER_ANNOTATION)
    if not raw:
        return None
    try:
        sink = json.loads(raw)
        return str(sink["url"]), str(sink.get("mode") or "all")
    except (ValueError, KeyError, TypeError):
        return None


def deployment(isvc: Obj, name: str, template: Obj, replicas: int, predictor_name: str) -> Obj:
    meta = isvc["metadata"]
    selector = {ISVC_LABEL: meta["name"], REVISION_LABEL: name}
    labels = {COMPONENT_LABEL: "predictor", "component": "predictor", MANAGED_BY[0]: MANAGED_BY[1], **selector}
    template = copy.deepcopy(template)
    template["metadata"]["labels"].update(labels)
    mode = (meta.get("annotations") or {}).get(MODE_ANNOTATION, "")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", "default"),
            "labels": labels,
            "annotations": {PREDICTOR_ANNOTATION: predictor_name, MODE_ANNOTATION: mode},
            "ownerReferences": [
                {
                    "apiVersion": API,
                    "kind": "InferenceService",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
    }
