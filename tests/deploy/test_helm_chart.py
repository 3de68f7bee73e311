"""helm/ganserve rendered by the real `helm` for the default values and every ci/*-values.yaml:
lint, and assertions on what Kubernetes would get (probes, GPU limits, ports, labels, env, HPAs,
securityContext, model repository sources)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.deploy.helpers import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    REPO,
    container,
    env_of,
    pod_specs,
    require_module,
    run_helm,
)

VALUES = [None, *CI_VALUES]
VALUE_IDS = ["default", *[p.name.removesuffix("-values.yaml") for p in CI_VALUES]]
TRITON = f"{RELEASE}-ganserve-triton"
GATEWAY = f"{RELEASE}-ganserve-gateway"
STANDARD_LABELS = {"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"}


def ci(name: str):
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.is_file(), path
    return path


def probe(c: dict, kind: str) -> tuple[str, object]:
    get = c[f"{kind}Probe"]["httpGet"]
    return get["path"], get["port"]


def port_numbers(c: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


# ---- every values file -----------------------------------------------------------------------------

@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_lint_strict(helm, values):
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["-f", str(values)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_objects_are_well_formed_and_labelled(render, values):
    docs = render(values)
    assert docs, "nothing rendered"
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate objects: {keys}"
    for d in docs:
        assert d.get("apiVersion") and d.get("kind"), d
        name = d["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), f"not a DNS label: {name}"
        labels = d["metadata"].get("labels", {})
        assert STANDARD_LABELS <= labels.keys(), f"{d['kind']}/{name} lacks {STANDARD_LABELS - labels.keys()}"
        assert labels["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_selectors_match_their_pods(render, values):
    """Every Service, PDB, HPA, ServiceMonitor and NetworkPolicy points at pods the chart makes."""
    docs = render(values)
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in docs.of_kind("Deployment")}
    for d in docs.of_kind("Deployment"):
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pods[d["metadata"]["name"]].items()

    def selects_some_pod(selector: dict) -> bool:
        return any(selector.items() <= labels.items() for labels in pods.values())

    for d in docs.of_kind("Service"):
        assert selects_some_pod(d["spec"]["selector"]), d["metadata"]["name"]
        for port in d["spec"]["ports"]:  # named target ports exist on the selected pods' containers
            target = port["targetPort"]
            owner = next(x for x in docs.of_kind("Deployment")
                         if d["spec"]["selector"].items() <= x["spec"]["template"]["metadata"]["labels"].items())
            assert target in port_numbers(container(owner)), f"{d['metadata']['name']}: no port {target}"
    for d in docs.of_kind("PodDisruptionBudget") + docs.of_kind("NetworkPolicy"):
        key = "selector" if d["kind"] == "PodDisruptionBudget" else "podSelector"
        assert selects_some_pod(d["spec"][key]["matchLabels"]), d["metadata"]["name"]
    for d in docs.of_kind("HorizontalPodAutoscaler"):
        ref = d["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment") and ref["name"] in pods
    for d in docs.of_kind("ServiceMonitor"):
        services = [s for s in docs.of_kind("Service")
                    if d["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert services, d["metadata"]["name"]
        for endpoint in d["spec"]["endpoints"]:
            having_port = [s for s in services if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}]
            assert len(having_port) == 1, f"{endpoint['port']} must be scraped through exactly one Service"


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_security_context_defaults(render, values):
    for name, spec in pod_specs(render(values)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert "resources" in c, (name, c["name"])
        # A read-only root filesystem needs a writable /tmp.
        mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        if spec.get("restartPolicy") != "Never":
            assert "/tmp" in mounts, name


def test_manifests_match_the_kubernetes_schemas(render):
    """Every object against the Kubernetes OpenAPI schemas of the oldest supported (1.25) and a
    current (1.34) release, unknown fields rejected: what `kubectl apply` would check, offline."""
    kv = require_module("kubernetes_validate")
    problems, seen = [], set()
    for values in VALUES:
        for d in render(values):
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: checked in test_servicemonitors
            key = json.dumps(d, sort_keys=True)
            if key in seen:  # the same object rendered by another values file
                continue
            seen.add(key)
            for version in ("1.25", "1.34"):
                try:
                    kv.validate(d, version, strict=True)
                except kv.ValidationError as exc:
                    problems.append(f"{values and values.name}: {d['kind']}/{d['metadata']['name']} "
                                    f"(k8s {version}): {exc.message}")
    assert not problems, "\n".join(problems)


# ---- default values ----------------------------------------------------------------------------------

def test_default_objects(render):
    """Triton + gateway + Services + the gateway HPA; optional objects stay off by default."""
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in render())
    assert kinds == sorted([
        ("ServiceAccount", f"{RELEASE}-ganserve"),
        ("Deployment", TRITON), ("Service", TRITON), ("Service", f"{TRITON}-headless"),
        ("Deployment", GATEWAY), ("Service", GATEWAY), ("HorizontalPodAutoscaler", GATEWAY),
        ("Pod", f"{GATEWAY}-test"),
    ])


def test_triton_deployment(render):
    deployment = render().named("Deployment", TRITON)
    spec = deployment["spec"]["template"]["spec"]
    triton = container(deployment, "triton")
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:25.06-py3"
    assert "command" not in triton, "keep the NGC entrypoint (CUDA compatibility set-up)"
    assert triton["args"] == ["tritonserver", "--model-repository=/models", "--http-port=8000", "--grpc-port=8001",
                              "--metrics-port=8002", "--model-control-mode=none"]
    assert port_numbers(triton) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert probe(triton, "liveness") == ("/v2/health/live", "http")
    assert probe(triton, "readiness") == ("/v2/health/ready", "http")
    assert probe(triton, "startup") == ("/v2/health/live", "http")
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "too little time to load models"
    # GPUs
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # Model repository: the gateway image's models copied into an emptyDir, mounted read-only.
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in triton["volumeMounts"]
    (init,) = spec["initContainers"]
    assert init["name"] == "copy-models" and init["image"] == "ganserve:0.1.0"
    assert init["volumeMounts"] == [{"name": "models", "mountPath": "/mnt/models"}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["models"]
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert spec["securityContext"]["runAsUser"] == 1000  # triton-server in the NGC image
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_triton_values_reach_the_pod(render):
    deployment = render(None, "--set", "triton.image.tag=24.12", "--set", "triton.gpu.count=4",
                        "--set", "triton.modelControlMode=poll", "--set", "triton.repositoryPollSecs=15")
    triton = container(deployment.named("Deployment", TRITON))
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.12-py3"
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert "--model-control-mode=poll" in triton["args"] and "--repository-poll-secs=15" in triton["args"]
    cpu_only = container(render(None, "--set", "triton.gpu.count=0").named("Deployment", TRITON))
    assert "nvidia.com/gpu" not in cpu_only["resources"].get("limits", {})


def test_triton_services(render):
    docs = render()
    service = docs.named("Service", TRITON)
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    headless = docs.named("Service", f"{TRITON}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert "metrics" not in {p["name"] for p in headless["spec"]["ports"]}  # scraped once, not twice


def test_gateway_deployment(render):
    docs = render()
    deployment = docs.named("Deployment", GATEWAY)
    gateway = container(deployment, "gateway")
    assert gateway["image"] == "ganserve:0.1.0"  # the chart's appVersion
    assert port_numbers(gateway) == {"http": 8000, "grpc": 50051}
    assert probe(gateway, "liveness") == ("/healthz", "http")
    assert probe(gateway, "readiness") == ("/readyz", "http")
    assert gateway["resources"]["requests"]["cpu"]  # the CPU HPA's denominator
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    env = env_of(gateway)
    assert env["GANSERVE_BACKEND"] == "triton"
    host, port = env["GANSERVE_TRITON_URL"].split(":")
    triton_service = docs.named("Service", host)  # the URL points at the chart's Triton Service...
    assert int(port) in {p["port"] for p in triton_service["spec"]["ports"] if p["name"] == "grpc"}  # ...gRPC port
    assert env["GANSERVE_HOST"] == "0.0.0.0"
    assert env["GANSERVE_HTTP_PORT"] == "8000" and env["GANSERVE_GRPC_PORT"] == "50051"
    assert env["GANSERVE_MODEL_REPOSITORY"] == "/models"
    assert env["GANSERVE_MAX_UPLOAD_BYTES"] == "8388608"  # whole numbers, never 8.388608e+06
    assert env["GANSERVE_REQUEST_TIMEOUT_S"] == "30"
    assert env["GANSERVE_LOG_LEVEL"] == "info"
    service = docs.named("Service", GATEWAY)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8000, "grpc": 50051}
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(env["GANSERVE_SHUTDOWN_GRACE_S"]) + 5, "SIGKILL before in-flight requests finish"


def test_gateway_settings_values(render):
    gateway = container(render(None, "--set", "gateway.settings.requestTimeoutS=2.5",
                               "--set", "gateway.settings.maxImagesPerRequest=8",
                               "--set", "gateway.extraEnv[0].name=EXTRA", "--set-string", "gateway.extraEnv[0].value=1",
                               "--set", "gateway.tritonUrl=dns:///triton-headless:8001",
                               "--set", "gateway.image.tag=abc123").named("Deployment", GATEWAY))
    env = env_of(gateway)
    assert env["GANSERVE_REQUEST_TIMEOUT_S"] == "2.5"
    assert env["GANSERVE_MAX_IMAGES_PER_REQUEST"] == "8"
    assert env["EXTRA"] == "1"
    assert env["GANSERVE_TRITON_URL"] == "dns:///triton-headless:8001"
    assert gateway["image"] == "ganserve:abc123"


@pytest.mark.parametrize("values", [None, "embedded"], ids=["triton", "embedded"])
def test_gateway_env_is_valid_gateway_settings(render, values, monkeypatch):
    """The rendered GANSERVE_* variables are settings the gateway knows, and it accepts their values."""
    settings_module = pytest.importorskip("ganserve.serve.settings", reason="the serve extra is not installed")
    docs = render(values and ci(values))
    env = env_of(container(docs.named("Deployment", GATEWAY)))
    ours = {k: v for k, v in env.items() if k.startswith("GANSERVE_")}
    fields = {"GANSERVE_" + name.upper() for name in settings_module.Settings.model_fields}
    assert ours.keys() <= fields, f"not gateway settings: {sorted(ours.keys() - fields)}"
    for key in list(__import__("os").environ):
        if key.startswith("GANSERVE_"):
            monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    settings = settings_module.Settings()
    assert settings.backend == ("onnxruntime" if values == "embedded" else "triton")
    assert str(settings.model_repository) == "/models"


def test_chart_defaults_are_the_gateway_defaults():
    """values.yaml's gateway.settings repeat the gateway's own defaults (no silent divergence)."""
    settings_module = pytest.importorskip("ganserve.serve.settings", reason="the serve extra is not installed")
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["settings"]
    fields = settings_module.Settings.model_fields
    for key, value in values.items():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        assert name in fields, f"gateway.settings.{key}: no such gateway setting"
        assert fields[name].default == value, f"gateway.settings.{key}: {value} != gateway default {fields[name].default}"
    budget = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["memoryBudgetMB"]
    assert budget == fields["memory_budget_mb"].default, "gateway.memoryBudgetMB != the gateway's memory_budget_mb"


def test_gateway_connection_settings(render):
    """The connection limits reach the gateway (docs/deploy.md, "Connections and file descriptors")."""
    env = env_of(container(render().named("Deployment", GATEWAY)))
    assert (env["GANSERVE_HTTP_HEADER_TIMEOUT_S"], env["GANSERVE_HTTP_BODY_TIMEOUT_S"],
            env["GANSERVE_HTTP_KEEPALIVE_TIMEOUT_S"]) == ("10", "30", "5")
    assert (env["GANSERVE_MAX_CONNECTIONS"], env["GANSERVE_GRPC_MAX_CONNECTIONS"],
            env["GANSERVE_GRPC_MAX_CONCURRENT_RPCS"]) == ("512", "128", "256")
    assert (env["GANSERVE_GRPC_MAX_CONNECTION_IDLE_S"], env["GANSERVE_GRPC_MAX_CONNECTION_AGE_S"]) == ("300", "1800")
    env = env_of(container(render(None, "--set", "gateway.settings.maxConnections=2000",
                                  "--set", "gateway.settings.httpHeaderTimeoutS=2.5").named("Deployment", GATEWAY)))
    assert env["GANSERVE_MAX_CONNECTIONS"] == "2000" and env["GANSERVE_HTTP_HEADER_TIMEOUT_S"] == "2.5"


@pytest.mark.parametrize("values,args,budget,memory_request,memory_limit", [
    (None, [], "1536", "1536Mi", "1920Mi"),                                     # the default budget
    (None, ["--set", "gateway.memoryBudgetMB=1001"], "1001", "1001Mi", "1252Mi"),  # ceil(1.25 x 1001)
    ("embedded", [], "1536", "1536Mi", "1920Mi"),
], ids=["default", "odd-budget", "embedded"])
def test_gateway_memory_follows_its_budget(render, values, args, budget, memory_request, memory_limit):
    """gateway.memoryBudgetMB is the gateway's GANSERVE_MEMORY_BUDGET_MB, its container's memory
    request, and 1.25 x its memory limit (room for what admission control does not see)."""
    gateway = container(render(values and ci(values), *args).named("Deployment", GATEWAY))
    assert env_of(gateway)["GANSERVE_MEMORY_BUDGET_MB"] == budget
    assert gateway["resources"]["requests"]["memory"] == memory_request
    assert gateway["resources"]["limits"] == {"memory": memory_limit}
    assert gateway["resources"]["requests"]["cpu"]


def test_explicit_gateway_memory_resources_win(render):
    limit_only = container(render(None, "--set", "gateway.resources.limits.memory=3Gi").named("Deployment", GATEWAY))
    assert limit_only["resources"] == {"requests": {"cpu": "500m", "memory": "1536Mi"}, "limits": {"memory": "3Gi"}}
    both = container(render(None, "--set", "gateway.resources.requests.memory=1Gi",
                            "--set", "gateway.resources.limits.memory=2Gi",
                            "--set", "gateway.memoryBudgetMB=1200").named("Deployment", GATEWAY))
    assert both["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert env_of(both)["GANSERVE_MEMORY_BUDGET_MB"] == "1200"


def test_gateway_hpa(render):
    hpa = render().named("HorizontalPodAutoscaler", GATEWAY)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == GATEWAY
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                                 "averageUtilization": 70}}}


def test_notes(helm):
    result = run_helm(helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"port-forward service/{GATEWAY} 8000:8000" in notes
    assert f"{TRITON}:8001" in notes


def test_helm_test_pod_checks_readiness(render):
    pod = render().named("Pod", f"{GATEWAY}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"http://{GATEWAY}:8000" in script and "/readyz" in script
    assert render(None, "--set", "tests.enabled=false").of_kind("Pod") == []


# ---- optional features (one ci/*-values.yaml each) --------------------------------------------------

def test_embedded_backend(render):
    docs = render(ci("embedded"))
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "triton"]
    env = env_of(container(docs.named("Deployment", GATEWAY)))
    assert env["GANSERVE_BACKEND"] == "onnxruntime" and "GANSERVE_TRITON_URL" not in env
    assert env["GANSERVE_BATCHING"] == "true"
    assert env["GANSERVE_BATCH_MAX_QUEUE_DELAY_MS"] == "2"
    assert env["GANSERVE_ORT_INTRA_OP_THREADS"] == "2"


def test_triton_autoscaling_on_queue_time(render):
    docs = render(ci("triton-autoscaling"))
    hpa = docs.named("HorizontalPodAutoscaler", TRITON)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": TRITON}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "10000"}
    # The metric is the one the documented prometheus-adapter rule serves.
    adapter = yaml.safe_load((CHART / "examples" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]
    assert "replicas" not in docs.named("Deployment", TRITON)["spec"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_gateway_fixed_replicas(render):
    docs = render(ci("gateway-fixed-replicas"))
    assert docs.named("Deployment", GATEWAY)["spec"]["replicas"] == 3
    assert GATEWAY not in {d["metadata"]["name"] for d in docs.of_kind("HorizontalPodAutoscaler")}


def test_servicemonitors(render):
    docs = render(ci("servicemonitor"))
    monitors = {d["metadata"]["name"]: d for d in docs.of_kind("ServiceMonitor")}
    assert monitors.keys() == {GATEWAY, TRITON}
    for name, port in ((GATEWAY, "http"), (TRITON, "metrics")):
        monitor = monitors[name]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["endpoints"] == [{"port": port, "path": "/metrics", "interval": "30s",
                                                 "scrapeTimeout": "10s"}]


def test_pod_disruption_budgets(render):
    docs = render(ci("pdb"))
    budgets = {d["metadata"]["name"]: d for d in docs.of_kind("PodDisruptionBudget")}
    assert budgets.keys() == {GATEWAY, TRITON}
    assert all(b["apiVersion"] == "policy/v1" for b in budgets.values())
    assert budgets[TRITON]["spec"]["maxUnavailable"] == 1
    assert budgets[GATEWAY]["spec"]["maxUnavailable"] == "25%"


def test_network_policies(render):
    docs = render(ci("networkpolicy"))
    policies = {d["metadata"]["name"]: d for d in docs.of_kind("NetworkPolicy")}
    assert policies.keys() == {GATEWAY, TRITON}
    inference, metrics = policies[TRITON]["spec"]["ingress"]
    gateway_pods = docs.named("Deployment", GATEWAY)["spec"]["template"]["metadata"]["labels"]
    assert inference["from"][0]["podSelector"]["matchLabels"].items() <= gateway_pods.items()
    assert {p["port"] for p in inference["ports"]} == {"http", "grpc"}
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    (gateway_rule,) = policies[GATEWAY]["spec"]["ingress"]
    assert {p["port"] for p in gateway_rule["ports"]} == {"http", "grpc"}
    assert gateway_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}


def test_ingress(render):
    docs = render(ci("ingress"))
    ingress = docs.named("Ingress", GATEWAY)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "gan.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": GATEWAY, "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"secretName": "gan-example-tls", "hosts": ["gan.example.com"]}]


def test_model_repository_from_pvc(render):
    docs = render(ci("pvc"))
    for name in (TRITON, GATEWAY):
        spec = docs.named("Deployment", name)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "ganserve-models", "readOnly": True}
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert mount == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "model_repository"}
        assert "initContainers" not in spec


def test_model_repository_from_object_storage(render):
    docs = render(ci("objectstorage"))
    for name in (TRITON, GATEWAY):
        spec = docs.named("Deployment", name)["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        assert init["name"] == "fetch-models" and init["image"] == "amazon/aws-cli:2.27.0"
        env = env_of(init)
        assert env["MODEL_REPOSITORY_URI"] == "s3://example-bucket/ganserve/model_repository"
        assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
        assert "$(MODEL_REPOSITORY_URI)" in init["command"]  # expanded by the kubelet from env
        assert init["envFrom"] == [{"secretRef": {"name": "ganserve-s3-credentials"}}]
        assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in spec["containers"][0]["volumeMounts"]
    account = docs.of_kind("ServiceAccount")[0]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


def test_model_repository_from_triton_image(render):
    docs = render(ci("triton-image"))
    spec = docs.named("Deployment", TRITON)["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "registry.example.com/ganserve-triton:2025.06.1"
    assert "initContainers" not in spec
    assert "models" not in {v["name"] for v in spec["volumes"]}
    assert "--model-repository=/models" in spec["containers"][0]["args"]


def test_model_control_explicit(render):
    args = container(render(ci("model-control-explicit")).named("Deployment", TRITON))["args"]
    assert "--model-control-mode=explicit" in args
    assert "--load-model=dcgan" in args and "--log-verbose=1" in args


def test_scheduling(render):
    docs = render(ci("scheduling"))
    spec = docs.named("Deployment", TRITON)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["priorityClassName"] == "inference-critical"
    assert container(docs.named("Deployment", TRITON))["resources"]["limits"]["nvidia.com/gpu"] == 2
    for name in (TRITON, GATEWAY):
        pod = docs.named("Deployment", name)["spec"]["template"]
        (constraint,) = pod["spec"]["topologySpreadConstraints"]
        assert constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_common_labels_and_names(render):
    docs = render(None, "--set", "commonLabels.team=vision", "--set", "fullnameOverride=gan")
    assert {d["metadata"]["name"] for d in docs.of_kind("Deployment")} == {"gan-triton", "gan-gateway"}
    assert all(d["metadata"]["labels"]["team"] == "vision" for d in docs)
    env = env_of(container(docs.named("Deployment", "gan-gateway")))
    assert env["GANSERVE_TRITON_URL"] == "gan-triton:8001"


@pytest.mark.parametrize("args,message", [
    (["--set", "modelRepository.source=pvc"], "modelRepository.pvc.claimName is required"),
    (["--set", "modelRepository.source=objectStorage"], "modelRepository.objectStorage.uri is required"),
    (["--set", "gateway.resources.requests=null"], "set gateway.resources.requests.cpu"),
])
def test_missing_required_values_fail_clearly(helm, args, message):
    result = run_helm(helm, "template", RELEASE, str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_optional_feature_has_a_ci_values_file():
    """Every `enabled: false` in values.yaml is switched on by some ci/*-values.yaml (style guide),
    and every ci file starts with a comment saying what it covers."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def disabled(node, path=()):
        if isinstance(node, dict):
            if node.get("enabled") is False:
                yield ".".join(path)
            for key, value in node.items():
                yield from disabled(value, (*path, key))

    def enabled_in(node, path):
        for key in path.split("."):
            node = (node or {}).get(key)
        return isinstance(node, dict) and node.get("enabled") is True

    ci_files = {p.name: p.read_text() for p in CI_VALUES}
    for path in disabled(defaults):
        assert any(enabled_in(yaml.safe_load(text), path) for text in ci_files.values()), \
            f"no ci/*-values.yaml turns on {path}.enabled"
    for name, text in ci_files.items():
        assert text.startswith("# "), f"ci/{name}: say what it covers in a first-line comment"
    # ...and turning a default-on feature off is covered too
    assert any(not (yaml.safe_load(t).get("triton") or {}).get("enabled", True) for t in ci_files.values())


def test_docs_cover_the_chart():
    docs = (REPO / "docs" / "deploy.md").read_text()
    for needle in ("helm install", "values.schema.json", "prometheus-adapter", "torchrun",
                   "nvidia.com/gpu", "ReadOnlyMany", "hadolint", "memoryBudgetMB", "RLIMIT_NOFILE"):
        assert needle in docs, f"docs/deploy.md does not mention {needle}"


def test_supported_kubernetes_versions(helm):
    ok = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", "1.25.0")
    assert ok.returncode == 0, ok.stderr
    old = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", "1.24.0")
    assert old.returncode != 0 and "chart requires kubeVersion: >=1.25.0-0" in old.stderr
