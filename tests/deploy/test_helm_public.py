"""The chart on a public address: API keys from a Secret (the chart's or an existing one), the admin
port with the ServiceMonitor and NetworkPolicy following it, the production example, and the
combinations the chart refuses. Rendered by the real `helm`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.helpers import CHART, NAMESPACE, RELEASE, container, env_of, run_helm

GATEWAY = f"{RELEASE}-ganserve-gateway"
PRODUCTION = CHART / "examples" / "production-values.yaml"


def ci(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


def test_api_keys_from_the_charts_secret(render, tmp_path, monkeypatch):
    keys_module = pytest.importorskip("ganserve.serve.access.keys", reason="the serve extra is not installed")
    settings_module = pytest.importorskip("ganserve.serve.settings")
    docs = render(ci("apikeys"))
    secret = docs.named("Secret", f"{GATEWAY}-api-keys")
    text = secret["stringData"]["keys"]
    deployment = docs.named("Deployment", GATEWAY)
    gateway = container(deployment)
    env = env_of(gateway)
    assert env["GANSERVE_API_KEYS_FILE"] == "/etc/ganserve/api-keys/keys"
    # the whole Secret as a read-only folder (a subPath mount would not follow updates)
    assert {"name": "api-keys", "mountPath": "/etc/ganserve/api-keys", "readOnly": True} in gateway["volumeMounts"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == f"{GATEWAY}-api-keys"
    # The file the gateway will read: valid, and the documented keys open it.
    key_file = tmp_path / "keys"
    key_file.write_text(text)
    store = keys_module.KeyStore(path=key_file)
    assert store.authenticate("web-key").id == "web" and store.authenticate("batch-key").rate == 2
    assert "web-key" not in text and "batch-key" not in text  # digests only
    # The rendered environment is settings the gateway accepts, with the Secret's file in place.
    for key in [k for k in __import__("os").environ if k.startswith("GANSERVE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("GANSERVE_"):
            monkeypatch.setenv(key, str(key_file) if key == "GANSERVE_API_KEYS_FILE" else value)
    settings = settings_module.Settings()
    assert (settings.metrics_endpoint, settings.docs_endpoint, settings.admin_port) == ("admin", "admin", 9000)
    assert settings.rate_limit == 0.5 and settings.cors_allow_origins == "https://app.example.com"
    assert settings.grpc_reflection is False


def test_an_existing_secret(render):
    docs = render(ci("apikeys-existing-secret"))
    assert docs.of_kind("Secret") == []
    deployment = docs.named("Deployment", GATEWAY)
    env = env_of(container(deployment))
    assert env["GANSERVE_API_KEYS_FILE"] == "/etc/ganserve/api-keys/keys.txt"
    assert env["GANSERVE_DOCS_ENDPOINT"] == "off" and env["GANSERVE_METRICS_ENDPOINT"] == "admin"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "ganserve-api-keys"


def test_the_admin_port_and_what_follows_it(render):
    docs = render(ci("apikeys"))
    gateway = container(docs.named("Deployment", GATEWAY))
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"http": 8000, "grpc": 50051, "admin": 9000}
    public = docs.named("Service", GATEWAY)
    assert {p["name"] for p in public["spec"]["ports"]} == {"http", "grpc"}  # nothing operational in public
    admin = docs.named("Service", f"{GATEWAY}-admin")
    assert admin["spec"]["type"] == "ClusterIP"
    assert admin["spec"]["ports"] == [{"name": "admin", "port": 9000, "targetPort": "admin", "protocol": "TCP"}]
    monitor = docs.named("ServiceMonitor", GATEWAY)
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"]
    policy = docs.named("NetworkPolicy", GATEWAY)
    api, scrape = policy["spec"]["ingress"]
    assert {p["port"] for p in api["ports"]} == {"http", "grpc"}
    assert [p["port"] for p in scrape["ports"]] == ["admin"]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    # without the admin port, none of it
    default = render()
    assert "GANSERVE_METRICS_ENDPOINT" not in env_of(container(default.named("Deployment", GATEWAY)))
    assert f"{GATEWAY}-admin" not in {d["metadata"]["name"] for d in default.of_kind("Service")}


def test_helm_test_checks_that_keys_are_required(render):
    script = render(ci("apikeys")).named("Pod", f"{GATEWAY}-test")["spec"]["containers"][0]["command"][-1]
    assert "/readyz" in script and "exc.code != 401" in script
    compile(script, "helm-test", "exec")  # the rendered script is valid Python
    compile(render().named("Pod", f"{GATEWAY}-test")["spec"]["containers"][0]["command"][-1], "t", "exec")


def test_the_production_example(helm, render):
    result = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(PRODUCTION))
    assert result.returncode == 0, result.stdout + result.stderr
    docs = render(PRODUCTION)
    env = env_of(container(docs.named("Deployment", GATEWAY)))
    assert env["GANSERVE_API_KEYS_FILE"].startswith("/etc/ganserve/api-keys/")
    assert env["GANSERVE_METRICS_ENDPOINT"] == "admin" and env["GANSERVE_CORS_ALLOW_ORIGINS"]
    assert float(env["GANSERVE_RATE_LIMIT"]) > 0
    assert [e["port"] for e in docs.named("ServiceMonitor", GATEWAY)["spec"]["endpoints"]] == ["admin"]
    ingress = docs.named("Ingress", GATEWAY)
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": GATEWAY, "port": {"name": "http"}}  # the public port only


@pytest.mark.parametrize("args,message", [
    (["--set", "gateway.apiKeys.enabled=true"], "needs the keys"),
    (["-f", str(CHART / "ci" / "servicemonitor-values.yaml"), "--set", "gateway.apiKeys.enabled=true",
      "--set", "gateway.apiKeys.existingSecret=k"], "set gateway.adminPort.enabled=true"),
])
def test_combinations_that_cannot_work_are_refused(helm, args, message):
    result = run_helm(helm, "template", RELEASE, str(CHART), *args)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize("args,where", [
    (["--set-json", 'gateway.apiKeys.entries=["alice hunter2"]'], "/gateway/apiKeys/entries/0"),
    (["--set", "gateway.adminPort.docs=maybe"], "/gateway/adminPort/docs"),
    (["--set", "gateway.settings.rateLimit=fast"], "/gateway/settings/rateLimit"),
    (["--set", "gateway.ports.admin=70000"], "/gateway/ports/admin"),
])
def test_schema_refuses_wrong_public_values(helm, args, where):
    result = run_helm(helm, "template", RELEASE, str(CHART), *args)
    assert result.returncode != 0 and f"at '{where}'" in result.stderr, result.stderr
