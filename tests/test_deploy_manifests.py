"""The Dockerfile, docker-compose.yml and Kubernetes manifests agree with Settings.

Docker and Kubernetes do not run here, so these tests parse the files. They
check the facts that break a deployment silently: an ``ANOMALYBERT_*`` name
that Settings ignores, a port or probe path that the consumer does not serve,
or a scrape target on the wrong port.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.server import MetricsServer
from stream.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_KUBERNETES_CONFIG = DEPLOY / "prometheus" / "prometheus-kubernetes.yml"
GRAFANA = DEPLOY / "grafana"
KAFKA_POM = DEPLOY / "kafka" / "pom.xml"

ENV_PREFIX = "ANOMALYBERT_"
PROMETHEUS_DEFAULT_PORT = 9090
# KEDA's Kafka scaler names for the SASL mechanisms of Settings.
KEDA_SASL_MODES = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}


# --- Helpers -----------------------------------------------------------------


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """Return the (INSTRUCTION, arguments) pairs, with continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_values(keyword: str) -> list[str]:
    return [args for kw, args in parse_dockerfile(DOCKERFILE) if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in dockerfile_values("ENV"):
        for item in shlex.split(arguments):
            name, separator, value = item.partition("=")
            assert separator, f"ENV {arguments!r}: use the NAME=value form"
            env[name] = value
    return env


def dockerfile_uid() -> int:
    (user,) = dockerfile_values("USER")
    return int(user.split(":")[0])


def dockerfile_exposed_ports() -> list[int]:
    return [
        int(port.split("/")[0])
        for args in dockerfile_values("EXPOSE")
        for port in args.split()
    ]


def healthcheck_command() -> list[str]:
    (arguments,) = dockerfile_values("HEALTHCHECK")
    _options, separator, command = arguments.partition("CMD ")
    assert separator, f"HEALTHCHECK {arguments!r} has no CMD"
    return shlex.split(command)


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore rules to ``path``: the last matching pattern decides.

    A pattern matches the path or one of its parent folders, as in Docker.
    ``**/`` matches any number of leading folders.
    """
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            matched = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            matched = any(
                fnmatch.fnmatchcase(candidate, pattern)
                and candidate.count("/") == pattern.count("/")
                for candidate in candidates
            )
        if matched:
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open() as stream:
        return [document for document in yaml.safe_load_all(stream) if document]


def load_compose() -> dict:
    with COMPOSE.open() as stream:
        return yaml.safe_load(stream)


def kubernetes_objects() -> dict[tuple[str, str], dict]:
    objects: dict[tuple[str, str], dict] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in load_yaml_documents(path):
            if "kind" in document and "metadata" in document:
                objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def only_object(kind: str) -> dict:
    matches = [obj for (k, _), obj in kubernetes_objects().items() if k == kind]
    assert len(matches) == 1, (
        f"expected one {kind} in {KUBERNETES}, found {len(matches)}"
    )
    return matches[0]


def settings_from_env(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, object]
) -> Settings:
    """Build Settings the way the consumer does, from these variables only."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def unknown_settings(names: object) -> list[str]:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in fields)


def default_metrics_port() -> int:
    return Settings.model_fields["metrics_port"].default


def kafka_version_of_local_broker() -> str:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ElementTree.parse(KAFKA_POM).getroot()
    version = root.find("m:properties/m:kafka.version", namespace)
    assert version is not None and version.text, f"no kafka.version in {KAFKA_POM}"
    return version.text.strip()


def image_name_and_tag(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    return repository.rsplit("/", 1)[-1], tag


def published_port(mapping: str) -> tuple[str, int, int]:
    """Split a compose port mapping "host_ip:host_port:container_port"."""
    host_ip, host_port, container_port = str(mapping).split(":")
    return host_ip, int(host_port), int(container_port)


def volume_mounts(service: dict) -> dict[str, Path]:
    """Map each bind mount's container path to its host path (relative to COMPOSE)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE.parent / source).resolve()
    return mounts


def host_path_of(container_path: str, mounts: dict[str, Path]) -> Path | None:
    for target, source in mounts.items():
        path = PurePosixPath(container_path)
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source / path.relative_to(target)
    return None


def option_value(arguments: list[str], option: str) -> str:
    index = arguments.index(option)
    return arguments[index + 1]


# --- Dockerfile ----------------------------------------------------------------


def test_dockerfile_base_is_slim_python_311():
    (base,) = dockerfile_values("FROM")
    assert base.startswith("python:3.11-slim")


def test_dockerfile_runs_as_non_root():
    assert dockerfile_uid() != 0


def test_dockerfile_installs_no_extras():
    installs = [args for args in dockerfile_values("RUN") if "pip install" in args]
    assert installs, "no RUN pip install in the Dockerfile"
    for command in installs:
        assert "[" not in command, f"extras installed: {command}"
        assert "torch" not in command


def test_dockerfile_installs_pinned_versions():
    installs = [args for args in dockerfile_values("RUN") if "pip install" in args]
    for command in installs:
        assert "-c /tmp/src/requirements/constraints.txt" in command
    copied = [args.split()[0] for args in dockerfile_values("COPY")]
    assert "requirements/constraints.txt" in copied


def test_inference_imports_no_torch():
    with (REPO / "pyproject.toml").open("rb") as stream:
        dependencies = tomllib.load(stream)["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith("torch")]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, stream.consumer, stream.cli; print('torch' in sys.modules)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_dockerfile_metrics_reachable_and_exposed():
    env = dockerfile_env()
    assert env["ANOMALYBERT_METRICS_HOST"] == "0.0.0.0"
    assert int(env["ANOMALYBERT_METRICS_PORT"]) == default_metrics_port()
    assert dockerfile_exposed_ports() == [default_metrics_port()]


def test_dockerfile_env_names_are_settings():
    assert unknown_settings(dockerfile_env()) == []


def test_dockerfile_entrypoint_is_consumer():
    (entrypoint,) = dockerfile_values("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", "stream.consumer"]


def test_dockerfile_copies_model_it_loads():
    model_path = PurePosixPath(dockerfile_env()["ANOMALYBERT_MODEL_PATH"])
    copied: set[PurePosixPath] = set()
    for arguments in dockerfile_values("COPY"):
        *sources, destination = shlex.split(arguments)
        for source in sources:
            if destination.endswith("/"):
                copied.add(PurePosixPath(destination) / PurePosixPath(source).name)
            else:
                copied.add(PurePosixPath(destination))
    assert model_path in copied
    # load_metadata reads the ONNX file named by the metadata, next to it.
    onnx_file = "model.onnx"
    committed = REPO / "models" / "model.onnx.json"
    if committed.exists():
        onnx_file = json.loads(committed.read_text())["onnx"].get("file", onnx_file)
    assert model_path.parent / onnx_file in copied


def test_dockerignore_keeps_copied_paths():
    patterns = dockerignore_patterns()
    for arguments in dockerfile_values("COPY"):
        *sources, _destination = shlex.split(arguments)
        for source in sources:
            assert not dockerignore_excludes(source.rstrip("/"), patterns), source
    for copied_path in ("stream/consumer.py", "pyproject.toml", "README.md"):
        assert not dockerignore_excludes(copied_path, patterns), copied_path


def test_dockerignore_leaves_out_the_rest():
    patterns = dockerignore_patterns()
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "training/train.py",
        "tests/data/nab/README.md",
        "models/checkpoint.pt",
        "stream/__pycache__/consumer.cpython-311.pyc",
    ):
        assert dockerignore_excludes(left_out, patterns), left_out


async def run_healthcheck(port: int) -> int:
    executable, flag, code = healthcheck_command()
    assert executable == "python"
    assert flag == "-c"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "ANOMALYBERT_METRICS_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_passes_on_live_server():
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: False)
    await server.start()
    try:
        status = await run_healthcheck(server.port)
    finally:
        await server.stop()
    assert status == 0


async def test_healthcheck_fails_without_server():
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: True)
    await server.start()
    port = server.port
    await server.stop()
    assert await run_healthcheck(port) != 0


def test_healthcheck_probes_healthz_on_default_port():
    code = healthcheck_command()[-1]
    assert "/healthz" in code
    assert f"'{default_metrics_port()}'" in code


# --- docker-compose.yml ---------------------------------------------------------


def test_compose_kafka_matches_local_broker():
    kafka = load_compose()["services"]["kafka"]
    name, tag = image_name_and_tag(kafka["image"])
    assert kafka["image"].startswith("apache/kafka:")
    assert tag == kafka_version_of_local_broker()
    roles = set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(","))
    assert roles == {"broker", "controller"}


def test_compose_consumer_env_is_valid(monkeypatch):
    consumer = load_compose()["services"]["consumer"]
    env = consumer["environment"]
    assert unknown_settings(env) == []
    settings = settings_from_env(monkeypatch, env)
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == default_metrics_port()


def test_compose_consumer_reaches_kafka(monkeypatch):
    services = load_compose()["services"]
    settings = settings_from_env(monkeypatch, services["consumer"]["environment"])
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    advertised_address = advertised.split("://", 1)[1]
    assert settings.kafka_bootstrap_servers == advertised_address
    assert advertised_address.split(":")[0] in services


def test_compose_topics_created(monkeypatch):
    services = load_compose()["services"]
    settings = settings_from_env(monkeypatch, services["consumer"]["environment"])
    script = services["kafka-init"]["command"][0]
    for topic in (settings.input_topic, settings.output_topic, settings.dlq_topic):
        assert f"--topic {topic} " in script, topic
    assert services["consumer"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_compose_consumer_built_from_dockerfile():
    build = load_compose()["services"]["consumer"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    # .dockerignore is read from the root of the build context.
    assert (context / ".dockerignore").resolve() == DOCKERIGNORE


def test_compose_consumer_port_published_locally(monkeypatch):
    consumer = load_compose()["services"]["consumer"]
    settings = settings_from_env(monkeypatch, consumer["environment"])
    (mapping,) = consumer["ports"]
    host_ip, _host_port, container_port = published_port(mapping)
    assert host_ip == "127.0.0.1"
    assert container_port == settings.metrics_port
    assert container_port in dockerfile_exposed_ports()


def test_compose_ports_bound_to_localhost():
    for name, service in load_compose()["services"].items():
        for mapping in service.get("ports", []):
            assert published_port(mapping)[0] == "127.0.0.1", f"{name}: {mapping}"


def test_compose_replay_produces_to_input(monkeypatch):
    services = load_compose()["services"]
    settings = settings_from_env(monkeypatch, services["consumer"]["environment"])
    replay = services["replay"]
    arguments = list(replay["entrypoint"]) + list(replay["command"])
    assert arguments[:2] == ["anomalybert", "replay"]
    assert option_value(arguments, "--series") == "demo"
    assert option_value(arguments, "--topic") == settings.input_topic
    assert (
        option_value(arguments, "--bootstrap-servers")
        == settings.kafka_bootstrap_servers
    )
    assert replay["image"] == services["consumer"]["image"]
    assert replay.get("restart") == "no"


def test_compose_replay_input_is_mounted():
    replay = load_compose()["services"]["replay"]
    arguments = list(replay["command"])
    host_file = host_path_of(option_value(arguments, "--input"), volume_mounts(replay))
    assert host_file is not None, "the replay input is not under a mounted folder"
    assert host_file.is_file(), host_file
    assert host_file.read_text().splitlines()[0] == "timestamp,value"


def test_compose_prometheus_mounts_config():
    prometheus = load_compose()["services"]["prometheus"]
    mounts = volume_mounts(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    config_dir = PurePosixPath("/etc/prometheus")
    with PROMETHEUS_CONFIG.open() as stream:
        config = yaml.safe_load(stream)
    for rule_file in config["rule_files"]:
        in_container = config_dir / rule_file
        assert host_path_of(str(in_container), mounts) is not None, rule_file
        assert host_path_of(str(in_container), mounts).is_file()
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_compose_scrape_target_is_consumer(monkeypatch):
    services = load_compose()["services"]
    settings = settings_from_env(monkeypatch, services["consumer"]["environment"])
    with PROMETHEUS_CONFIG.open() as stream:
        config = yaml.safe_load(stream)
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert static["targets"] == [f"consumer:{settings.metrics_port}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["job_name"] == "anomalybert"


def test_compose_grafana_provisioning():
    services = load_compose()["services"]
    mounts = volume_mounts(services["grafana"])
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    with (GRAFANA / "provisioning" / "dashboards" / "anomalybert.yml").open() as stream:
        (provider,) = yaml.safe_load(stream)["providers"]
    dashboards = host_path_of(provider["options"]["path"], mounts)
    assert dashboards == GRAFANA / "dashboards"
    assert (dashboards / "anomalybert.json").is_file()
    home = services["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert host_path_of(home, mounts) == dashboards / "anomalybert.json"


def test_grafana_datasource_is_compose_prometheus():
    services = load_compose()["services"]
    with (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").open() as stream:
        (datasource,) = yaml.safe_load(stream)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{PROMETHEUS_DEFAULT_PORT}"
    assert "prometheus" in services
    assert not any(
        "--web.listen-address" in a for a in services["prometheus"]["command"]
    )
    dashboard = json.loads((GRAFANA / "dashboards" / "anomalybert.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


# --- Kubernetes --------------------------------------------------------------------


def consumer_container() -> dict:
    deployment = only_object("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def kubernetes_env() -> dict[str, str]:
    env = dict(only_object("ConfigMap")["data"])
    env.update(only_object("Secret")["stringData"])
    return env


def container_port(name: str) -> int:
    for port in consumer_container()["ports"]:
        if port["name"] == name:
            return port["containerPort"]
    raise AssertionError(f"no container port named {name!r}")


def test_kubernetes_env_names_are_settings():
    assert unknown_settings(only_object("ConfigMap")["data"]) == []
    assert unknown_settings(only_object("Secret")["stringData"]) == []
    for name in kubernetes_env():
        assert name.startswith(ENV_PREFIX), name


def test_kubernetes_env_is_valid(monkeypatch):
    settings = settings_from_env(monkeypatch, kubernetes_env())
    assert settings.metrics_host == "0.0.0.0"
    assert settings.security_protocol.startswith("SASL")
    assert settings.sasl_username is not None


def test_kubernetes_secret_values_are_placeholders():
    secret = only_object("Secret")
    for name, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, name
    assert "PLACEHOLDER" in (KUBERNETES / "secret.yaml").read_text()


def test_kubernetes_deployment_uses_config():
    container = consumer_container()
    references = {
        ("configMapRef" if "configMapRef" in source else "secretRef"): (
            source.get("configMapRef") or source.get("secretRef")
        )["name"]
        for source in container["envFrom"]
    }
    assert references["configMapRef"] == only_object("ConfigMap")["metadata"]["name"]
    assert references["secretRef"] == only_object("Secret")["metadata"]["name"]


def test_kubernetes_metrics_port_agrees(monkeypatch):
    settings = settings_from_env(monkeypatch, kubernetes_env())
    port = container_port("metrics")
    assert port == settings.metrics_port
    assert port == default_metrics_port()
    assert port in dockerfile_exposed_ports()


def test_kubernetes_probes_use_health_endpoints():
    container = consumer_container()
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    for probe in (liveness, readiness):
        port = probe["port"]
        resolved = container_port(port) if isinstance(port, str) else port
        assert resolved == default_metrics_port()


def test_kubernetes_resources_requested():
    resources = consumer_container()["resources"]
    assert str(resources["requests"]["cpu"]) == "1"
    assert resources["requests"]["memory"].endswith(("Mi", "Gi"))
    assert "memory" in resources["limits"]
    assert "NOTE" in (KUBERNETES / "deployment.yaml").read_text()


def test_kubernetes_runs_as_image_user():
    pod = only_object("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()


def test_kubernetes_image_matches_compose():
    compose_image = load_compose()["services"]["consumer"]["image"]
    assert image_name_and_tag(consumer_container()["image"]) == image_name_and_tag(
        compose_image
    )


def test_kubernetes_selectors_match_pods():
    deployment = only_object("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = only_object("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    target = port["targetPort"]
    resolved = container_port(target) if isinstance(target, str) else target
    assert resolved == default_metrics_port()


def test_kubernetes_rollout_never_surges():
    # With a surge pod the group can have more members than partitions, and a
    # new pod without partitions never becomes ready.
    strategy = only_object("Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxSurge"] == 0


def test_kustomization_lists_required_files():
    with (KUBERNETES / "kustomization.yaml").open() as stream:
        resources = yaml.safe_load(stream)["resources"]
    for resource in resources:
        assert (KUBERNETES / resource).is_file(), resource
    assert set(resources) == {
        "configmap.yaml",
        "secret.yaml",
        "deployment.yaml",
        "service.yaml",
    }


def test_keda_scaler_matches_consumer(monkeypatch):
    settings = settings_from_env(monkeypatch, kubernetes_env())
    scaled = only_object("ScaledObject")
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == (only_object("Deployment")["metadata"]["name"])
    )
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert metadata["bootstrapServers"] == settings.kafka_bootstrap_servers
    assert metadata["consumerGroup"] == settings.group_id
    assert metadata["topic"] == settings.input_topic
    assert metadata["sasl"] == KEDA_SASL_MODES[settings.sasl_mechanism]
    uses_tls = settings.security_protocol.endswith("SSL")
    assert metadata["tls"] == ("enable" if uses_tls else "disable")
    assert metadata["allowIdleConsumers"] == "false"


def test_keda_authentication_uses_secret():
    authentication = only_object("TriggerAuthentication")
    (trigger,) = only_object("ScaledObject")["spec"]["triggers"]
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    secret = only_object("Secret")
    for reference in authentication["spec"]["secretTargetRef"]:
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"]


def test_kubernetes_scrape_config_selects_pods():
    with PROMETHEUS_KUBERNETES_CONFIG.open() as stream:
        config = yaml.safe_load(stream)
    with PROMETHEUS_CONFIG.open() as stream:
        compose_config = yaml.safe_load(stream)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == compose_config["scrape_configs"][0]["job_name"]
    keep = next(rule for rule in job["relabel_configs"] if rule["action"] == "keep")
    pod_labels = only_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    values = []
    for source in keep["source_labels"]:
        if source == "__meta_kubernetes_pod_container_port_name":
            values.append("metrics")
            continue
        label = source.removeprefix("__meta_kubernetes_pod_label_")
        matching = [
            v
            for k, v in pod_labels.items()
            if re.sub(r"[^a-zA-Z0-9_]", "_", k) == label
        ]
        assert matching, f"no pod label for {source}"
        values.append(matching[0])
    assert re.fullmatch(keep["regex"], ";".join(values))
    assert container_port("metrics") == default_metrics_port()
