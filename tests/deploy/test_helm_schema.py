"""values.schema.json: helm rejects a wrong value before rendering anything, and says where and why."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.helpers import CHART, RELEASE, run_helm

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def rejected(helm: str, *args: str) -> str:
    result = run_helm(helm, "template", RELEASE, str(CHART), *args)
    assert result.returncode != 0, f"helm accepted {args}"
    assert "don't meet the specifications of the schema" in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize("args,where,why", [
    # a wrong type: the path of the value, what it got and what it wants
    (["--set-string", "gateway.replicaCount=two"], "/gateway/replicaCount", "got string, want integer"),
    (["--set-string", "triton.gpu.count=1"], "/triton/gpu/count", "got string, want integer"),
    (["--set", "triton.enabled=yes"], "/triton/enabled", "got string, want boolean"),
    (["--set", "gateway.settings.maxImagesPerRequest=lots"], "/gateway/settings/maxImagesPerRequest",
     "got string, want integer"),
    (["--set", "gateway.extraEnv[0].name=N", "--set", "gateway.extraEnv[0].value=1"],
     "/gateway/extraEnv/0/value", "got number, want string"),
    # a value out of range or not among the choices
    (["--set", "triton.modelControlMode=sometimes"], "/triton/modelControlMode", "'none', 'poll', 'explicit'"),
    (["--set", "modelRepository.source=ftp"], "/modelRepository/source", "'bundled', 'image', 'pvc', 'objectStorage'"),
    (["--set", "gateway.settings.logLevel=loud"], "/gateway/settings/logLevel", "'critical'"),
    (["--set", "triton.ports.grpc=70000"], "/triton/ports/grpc", "maximum"),
    (["--set", "gateway.autoscaling.targetCPUUtilizationPercentage=0"],
     "/gateway/autoscaling/targetCPUUtilizationPercentage", "minimum"),
    (["--set", "triton.resources.limits.memory=lots"], "/triton/resources/limits/memory", ""),
    (["--set", "gateway.memoryBudgetMB=lots"], "/gateway/memoryBudgetMB", "got string, want integer"),
    (["--set", "gateway.memoryBudgetMB=10"], "/gateway/memoryBudgetMB", "minimum"),
    (["--set", "gateway.settings.maxConnections=0"], "/gateway/settings/maxConnections", "minimum"),
    (["--set", "gateway.settings.httpHeaderTimeoutS=0"], "/gateway/settings/httpHeaderTimeoutS", ""),
    # a misspelt key: named, not silently ignored
    (["--set", "gateway.setings.logLevel=debug"], "/gateway", "additional properties 'setings' not allowed"),
    (["--set", "gateway.settings.maxImages=3"], "/gateway/settings", "additional properties 'maxImages' not allowed"),
    # the budget is set once, at gateway.memoryBudgetMB (it also sizes the container)
    (["--set", "gateway.settings.memoryBudgetMb=1024"], "/gateway/settings",
     "additional properties 'memoryBudgetMb' not allowed"),
    (["--set", "triton.autoscalling.enabled=true"], "/triton", "additional properties 'autoscalling' not allowed"),
])
def test_wrong_values_are_rejected_with_a_clear_message(helm, args, where, why):
    message = rejected(helm, *args)
    assert f"at '{where}'" in message, message
    assert why in message, message


def test_a_wrong_type_in_a_values_file(helm, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"triton": {"replicaCount": "2"}, "gateway": {"ports": {"http": "8080"}}}))
    message = rejected(helm, "-f", str(values))
    assert "at '/triton/replicaCount': got string, want integer" in message
    assert "at '/gateway/ports/http': got string, want integer" in message  # every problem, at once


def test_decimal_settings_accept_helm_set_strings(helm):
    """`--set x=2.5` reaches the chart as the string "2.5": decimals are accepted as numbers or strings."""
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", "gateway.settings.requestTimeoutS=2.5")
    assert result.returncode == 0, result.stderr
    rejected(helm, "--set", "gateway.settings.requestTimeoutS=soon")


def test_every_closed_object_is_documented():
    """The schema describes the chart's own objects completely (additionalProperties: false), and
    every leaf of values.yaml has a schema entry."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node):
        while "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def walk(value, node, path):
        node = resolve(node)
        if node.get("type") == "object" and "properties" in node and isinstance(value, dict):
            for key, child in value.items():
                assert key in node["properties"] or node.get("additionalProperties") is not False, \
                    f"{path}.{key} is not in values.schema.json"
                if key in node["properties"]:
                    walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, SCHEMA, "")
    assert SCHEMA["additionalProperties"] is False
    for name in ("triton", "gateway", "modelRepository", "ingress", "serviceMonitor", "networkPolicy"):
        assert SCHEMA["properties"][name]["additionalProperties"] is False, name
