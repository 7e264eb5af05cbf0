"""The Kubernetes manifests: valid against the API's schemas, and wired like compose.yaml."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deliveryhub_kit.broker_access import (
    ADMIN_PASSWORD_FILE_VARIABLE,
    ENVIRONMENT_VARIABLES,
    SERVICE_ROLES,
    AccessJob,
)
from deliveryhub_kit.passwords import password_in
from tests.support.artifacts import (
    BROKER_ACCESS_COMMAND,
    DESIGN_PATHS,
    KUBERNETES,
    SAMPLE_ID,
    SERVICES,
    Json,
    PostgresInit,
    broker_access_jobs,
    code_of,
    command_of,
    environment_names,
    gateway_locations,
    image_of,
    kubernetes_documents,
    kubernetes_manifests,
    operator_paths,
    public_paths,
    route,
    unread_variables,
    uses_broker,
)

KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
BASE = KUBERNETES / "base"
EXAMPLE_SECRETS = BASE / "secrets.example.yaml"


def base_resources() -> list[Json]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [document for name in kustomization["resources"] for document in kubernetes_documents(BASE / name)]


def one(kind: str, name: str) -> Json:
    found = [d for d in base_resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container_of(workload: Json) -> Json:
    containers: list[Json] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def example_secret_values() -> dict[tuple[str, str], str]:
    return {
        (secret["metadata"]["name"], key): value
        for secret in kubernetes_documents(EXAMPLE_SECRETS)
        for key, value in secret["stringData"].items()
    }


def environment_of(container: Json) -> dict[str, str]:
    """The container's variables as a pod would see them, secrets taken from the example's shape."""
    config_maps = {d["metadata"]["name"]: d["data"] for d in base_resources() if d["kind"] == "ConfigMap"}
    secrets = example_secret_values()
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(config_maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        elif "configMapKeyRef" in variable["valueFrom"]:
            reference = variable["valueFrom"]["configMapKeyRef"]
            values[variable["name"]] = config_maps[reference["name"]][reference["key"]]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            key = (reference["name"], reference["key"])
            assert key in secrets, f"{variable['name']} comes from {key}, which the example secret lacks"
            values[variable["name"]] = secrets[key]
    return values


def secret_of(container: Json, name: str) -> tuple[str, str]:
    """The secret and key a variable of the container comes from."""
    (variable,) = [variable for variable in container.get("env", []) if variable["name"] == name]
    reference = variable["valueFrom"]["secretKeyRef"]
    return reference["name"], reference["key"]


def mounted_secrets(workload: Json, container: Json) -> dict[PurePosixPath, tuple[str, str]]:
    """Each file the container finds in a mounted secret (or a projection of several): its path,
    and the secret and key it comes from."""
    volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"]["volumes"]}
    files: dict[PurePosixPath, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            sources = [{"name": volume["secret"]["secretName"], "items": volume["secret"]["items"]}]
        elif "projected" in volume:
            sources = [source["secret"] for source in volume["projected"]["sources"]]
        else:
            continue
        for source in sources:
            for item in source["items"]:
                files[PurePosixPath(mount["mountPath"]) / item["path"]] = (source["name"], item["key"])
    return files


def file_secret(workload: Json, variable: str) -> tuple[str, str]:
    """The secret and key of the file a *_FILE variable of the workload's container names."""
    container = container_of(workload)
    path = PurePosixPath(environment_of(container)[variable])
    files = mounted_secrets(workload, container)
    assert path in files, f"{variable} names {path}, which no mounted secret holds"
    return files[path]


def with_stand_ins(workload: Json, folder: Path) -> dict[str, str]:
    """The container's variables, each *_FILE pointing at a file here holding the example secret's value."""
    environment = environment_of(container_of(workload))
    secrets = example_secret_values()
    for variable in [name for name in environment if name.endswith("_FILE")]:
        key = file_secret(workload, variable)
        assert key in secrets, f"{variable} comes from {key}, which the example secret lacks"
        stand_in = folder / variable
        stand_in.write_text(secrets[key])
        environment[variable] = str(stand_in)
    return environment


# The secrets that hold passwords: each service's own, and the broker administrator's.
PASSWORD_SECRETS = {f"deliveryhub-{name}-passwords": name for name in SERVICES}


def test_kubernetes_validate_accepts_every_manifest() -> None:
    manifests = [str(path) for path in kubernetes_manifests()]
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", *manifests],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kustomizations_name_every_manifest_but_the_secrets_example() -> None:
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    present = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml", EXAMPLE_SECRETS.name}
    assert listed == present
    for overlay in (KUBERNETES / "overlays").iterdir():
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        for resource in kustomization["resources"]:
            assert (overlay / resource).exists(), f"{overlay.name} names a missing {resource}"
        images = {container_of(one("Deployment", name))["image"].split(":")[0] for name in SERVICES}
        assert {image["name"] for image in kustomization.get("images", [])} == images


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_deployment_serves_probes_and_is_bounded_like_its_image(service: str) -> None:
    dockerfile = image_of(SERVICES[service])
    deployment = one("Deployment", service)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = container_of(deployment)
    assert container["image"].startswith(f"deliveryhub/{service}:")
    assert container["ports"] == [{"name": "http", "containerPort": dockerfile.port}]
    # Traffic only once the database is migrated; after that, a broker outage must not take the API away.
    assert container["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, f"{service} {bound}"
    pod = deployment["spec"]["template"]["spec"]
    user = int(dockerfile.final.last("USER").arguments.split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["runAsUser"] == user

    service_object = one("Service", service)
    assert service_object["spec"]["selector"].items() <= pod_labels.items()
    assert service_object["spec"]["ports"] == [
        {"name": "http", "port": dockerfile.port, "targetPort": "http"}
    ]
    autoscaler = one("HorizontalPodAutoscaler", service)
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": service,
    }
    assert autoscaler["spec"]["minReplicas"] >= 2
    budget = one("PodDisruptionBudget", service)
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_termination_leaves_time_for_the_graceful_shutdown(
    service: str, compose_services: dict[str, Json]
) -> None:
    command = image_of(SERVICES[service]).command
    graceful = int(command[command.index("--timeout-graceful-shutdown") + 1])
    deployment = one("Deployment", service)
    pre_stop = container_of(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The shutdown after uvicorn's timeout (consumers, relay, pools) needs a few seconds more.
    assert (
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        >= int(pre_stop[1]) + graceful + 5
    )
    stop_grace = str(compose_services[service]["stop_grace_period"])
    assert stop_grace.endswith("s"), stop_grace
    assert int(stop_grace[:-1]) >= graceful + 5


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_environment_is_what_the_settings_read_and_files_are_mounted(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code = SERVICES[service]
    deployment = one("Deployment", service)
    container = container_of(deployment)
    environment = environment_of(container)
    readable = environment_names(code.settings)
    unread = unread_variables(environment, code.settings)
    assert not unread, f"{service} sets {unread}, which {code.settings.__name__} does not read"
    assert "DATABASE_URL" in environment
    assert ("AMQP_URL" in environment) == uses_broker(code)
    assert environment["ENVIRONMENT"] == "production"

    assert "DATABASE_PASSWORD_FILE" in environment
    assert ("AMQP_PASSWORD_FILE" in environment) == uses_broker(code)
    mounted = mounted_secrets(deployment, container)
    if service != "web":
        assert ("deliveryhub-token-keys", "jwt-private.pem") not in mounted.values(), (
            f"{service} mounts the private key"
        )
    # Of the passwords, its own alone.
    for secret, _ in mounted.values():
        assert PASSWORD_SECRETS.get(secret, service) == service, f"{service} mounts {secret}"

    for variable in readable:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    for variable, value in with_stand_ins(deployment, tmp_path).items():
        monkeypatch.setenv(variable, value)
    settings = code.settings()
    # The password in effect is its file's.
    assert password_in(settings.database_url) == (tmp_path / "DATABASE_PASSWORD_FILE").read_text()


def ingress_route(request_path: str) -> str | None:
    """The `service:port` the Ingress sends a path to, or None: the controller's own 404."""
    ingress = one("Ingress", "deliveryhub")
    (rule,) = ingress["spec"]["rules"]
    paths: list[dict[str, Any]] = rule["http"]["paths"]
    assert "defaultBackend" not in ingress["spec"], "a default backend would take every other path"
    ports = {name: image_of(code).port for name, code in SERVICES.items()}

    def matches(entry: dict[str, Any]) -> bool:
        path = str(entry["path"])
        if entry["pathType"] == "Exact":
            return request_path == path
        assert entry["pathType"] == "Prefix", entry
        # Prefix matching is by whole path elements.
        return path == "/" or request_path == path or request_path.startswith(path.rstrip("/") + "/")

    matching = [entry for entry in paths if matches(entry)]
    if not matching:
        return None
    # An exact match wins, then the longest prefix.
    chosen = max(matching, key=lambda entry: (entry["pathType"] == "Exact", len(entry["path"])))
    backend = chosen["backend"]["service"]
    assert backend["port"] == {"name": "http"}
    return f"{backend['name']}:{ports[backend['name']]}"


def test_the_ingress_routes_like_the_gateway() -> None:
    for path in DESIGN_PATHS:
        concrete = path.replace("{id}", SAMPLE_ID)
        assert ingress_route(concrete) == route(gateway_locations(), concrete).upstream, path


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_ingress_passes_each_services_routes_and_none_of_its_operators_paths(service: str) -> None:
    code = SERVICES[service]
    address = f"{service}:{image_of(code).port}"
    for path in public_paths(code):
        concrete = re.sub(r"\{\w+\}", SAMPLE_ID, path)
        assert ingress_route(concrete) == address, path
    for path in operator_paths(code):
        assert ingress_route(path) is None, f"the Ingress sends {service}'s {path} to {ingress_route(path)}"


def test_the_services_believe_forwarded_headers_only_from_the_ingress_controller() -> None:
    for name in SERVICES:
        environment = environment_of(container_of(one("Deployment", name)))
        trusted = environment.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        assert trusted.strip() != "*", f"{name} believes any caller's X-Forwarded-For"
        for entry in trusted.split(","):
            ipaddress.ip_network(entry.strip())
    assert "FORWARDED_ALLOW_IPS" in environment_of(container_of(one("Deployment", "web"))), (
        "the console counts sign-ins per visitor: it must hear the visitor's address from the controller"
    )


def test_the_migration_jobs_run_what_compose_runs(compose_services: dict[str, Json]) -> None:
    compose_jobs = {
        code.name: command_of(service)
        for service in compose_services.values()
        if (code := code_of(service)) is not None and "migrate" in command_of(service)
    }
    jobs = [d for d in base_resources() if d["kind"] == "Job" and d["metadata"]["name"].endswith("-migrate")]
    assert {job["metadata"]["name"] for job in jobs} == {f"{name}-migrate" for name in SERVICES}
    assert {d["metadata"]["name"] for d in base_resources() if d["kind"] == "Job"} == {
        *(job["metadata"]["name"] for job in jobs),
        "broker-access",
    }
    for job in jobs:
        service = job["metadata"]["name"].removesuffix("-migrate")
        container = container_of(job)
        deployment = one("Deployment", service)
        assert container["image"] == container_of(deployment)["image"]
        assert container["command"] == compose_jobs[service]
        assert set(environment_of(container)) == {"DATABASE_URL", "DATABASE_PASSWORD_FILE"}
        assert (
            environment_of(container)["DATABASE_URL"]
            == environment_of(container_of(deployment))["DATABASE_URL"]
        )
        # Its service's database password, and nothing else of the service's.
        assert file_secret(job, "DATABASE_PASSWORD_FILE") == file_secret(deployment, "DATABASE_PASSWORD_FILE")
        assert list(mounted_secrets(job, container).values()) == [file_secret(job, "DATABASE_PASSWORD_FILE")]


def migration_jobs() -> list[Json]:
    return [d for d in base_resources() if d["kind"] == "Job" and d["metadata"]["name"].endswith("-migrate")]


def test_each_service_connects_as_its_own_user_which_the_access_job_makes(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    job_object = one("Job", "broker-access")
    job = container_of(job_object)
    (compose_job,) = broker_access_jobs(compose_services)
    compose_code = code_of(compose_services[compose_job])
    assert compose_code is not None
    assert job["command"] == command_of(compose_services[compose_job]) == BROKER_ACCESS_COMMAND
    assert job["image"] == container_of(one("Deployment", compose_code.name))["image"]

    environment = environment_of(job)
    assert set(environment) <= set(ENVIRONMENT_VARIABLES), "a variable the entry point does not read"
    access = AccessJob.from_environment(with_stand_ins(job_object, tmp_path))
    # The administrator's password comes from a secret of its own, which no service reads.
    admin_secret, _ = file_secret(job_object, ADMIN_PASSWORD_FILE_VARIABLE)
    assert admin_secret not in PASSWORD_SECRETS
    for workload in (*(one("Deployment", name) for name in SERVICES), *migration_jobs()):
        container = container_of(workload)
        variables = container.get("env", [])
        read = {variable.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for variable in variables}
        read |= {secret for secret, _ in mounted_secrets(workload, container).values()}
        assert admin_secret not in read, (
            f"{workload['metadata']['name']} can read the broker administrator's password"
        )
    # Of the services' secrets, the job reads their broker passwords alone.
    for secret, key in mounted_secrets(job_object, job).values():
        assert secret == admin_secret or key.startswith("rabbitmq-"), f"the job can read {secret}'s {key}"

    users: dict[str, str] = {}
    for role in SERVICE_ROLES:
        deployment = container_of(one("Deployment", role.service))
        # The very secret keys: the job makes the user, with the password, that the service connects as.
        assert secret_of(job, role.amqp_url_variable) == secret_of(deployment, "AMQP_URL"), role.service
        assert file_secret(job_object, role.amqp_password_file_variable) == file_secret(
            one("Deployment", role.service), "AMQP_PASSWORD_FILE"
        ), role.service
        deployed = environment_of(deployment)
        users[role.service] = str(urlsplit(deployed["AMQP_URL"]).username)
        assert environment.get("BROKER_PREFIX", "") == deployed.get("BROKER_PREFIX", ""), role.service
    assert len(set(users.values())) == len(users), f"the services share a broker user: {users}"
    assert access.admin_user not in users.values()
    delivery = environment_of(container_of(one("Deployment", "delivery")))
    assert access.legacy_prefix == (delivery.get("LEGACY_QUEUE_PREFIX") or None)
    for name in SERVICES:
        if not uses_broker(SERVICES[name]):
            assert "AMQP_URL" not in environment_of(container_of(one("Deployment", name))), name


PRODUCTION = KUBERNETES / "overlays" / "production"
# Where ingress-nginx runs by default; the policies name it (see network-policies.yaml).
INGRESS_CONTROLLER_NAMESPACE = "ingress-nginx"
CLUSTER_DNS = ("kube-system", {"k8s-app": "kube-dns"})
# An address outside the cluster: where the managed PostgreSQL and RabbitMQ are.
OUTSIDE = "192.0.2.10"


@pytest.fixture(scope="module")
def production() -> list[Json]:
    """The production overlay as `kubectl apply -k` would send it."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(PRODUCTION)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (its namespace and labels) or an address outside the cluster."""

    namespace: str = ""
    label_pairs: frozenset[tuple[str, str]] = frozenset()
    address: str | None = None

    @classmethod
    def pod(cls, namespace: str, labels: dict[str, str]) -> Peer:
        return cls(namespace, frozenset(labels.items()))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.label_pairs)


def selects(selector: Json, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"these tests read matchLabels only: {selector}"
    matched: dict[str, str] = selector.get("matchLabels") or {}
    return matched.items() <= labels.items()


def peer_matches(rule_peer: Json, peer: Peer, namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        if peer.address is None:
            return False
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.address)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(excepted) for excepted in block.get("except", [])
        )
    if peer.address is not None:
        return False
    if "namespaceSelector" in rule_peer:
        in_namespace = selects(
            rule_peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer.namespace}
        )
    else:
        in_namespace = peer.namespace == namespace
    return in_namespace and selects(rule_peer.get("podSelector", {}), peer.labels)


def allowed(
    documents: list[Json], direction: str, pod: Peer, other: Peer, port: int, protocol: str = "TCP"
) -> bool:
    """Whether the NetworkPolicies let `pod` receive from (Ingress) or send to (Egress) `other` on a port."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        policy
        for policy in documents
        if policy["kind"] == "NetworkPolicy"
        and policy["metadata"]["namespace"] == pod.namespace
        and selects(policy["spec"]["podSelector"], pod.labels)
        and direction in policy["spec"]["policyTypes"]
    ]
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            if peers and not any(peer_matches(peer, other, pod.namespace) for peer in peers):
                continue
            if ports and not any(
                entry.get("port", port) == port and entry.get("protocol", "TCP") == protocol
                for entry in ports
            ):
                continue
            return True
    # A pod no policy isolates takes and sends anything.
    return not selecting


def pod_of(documents: list[Json], kind: str, name: str) -> Peer:
    (workload,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return Peer.pod(workload["metadata"]["namespace"], workload["spec"]["template"]["metadata"]["labels"])


def port_of(url: str) -> int:
    parts = urlsplit(url)
    assert parts.port, f"{url} names no port"
    return parts.port


def test_the_production_manifests_are_valid(production: list[Json], tmp_path: Path) -> None:
    rendered = tmp_path / "production.yaml"
    rendered.write_text(yaml.safe_dump_all(production))
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", str(rendered)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_apis_take_traffic_only_from_the_ingress_controller_and_the_console(
    production: list[Json],
) -> None:
    controller = Peer.pod(INGRESS_CONTROLLER_NAMESPACE, {"app.kubernetes.io/name": "ingress-nginx"})
    stranger = Peer.pod("elsewhere", {"app": "anything"})
    web = pod_of(production, "Deployment", "web")
    for name in ("orders", "delivery"):
        api = pod_of(production, "Deployment", name)
        port = image_of(SERVICES[name]).port
        assert allowed(production, "Ingress", api, controller, port), name
        assert allowed(production, "Ingress", api, web, port), f"the console cannot call {name}"
        other_api = pod_of(production, "Deployment", "delivery" if name == "orders" else "orders")
        for refused in (other_api, stranger, Peer(address=OUTSIDE)):
            assert not allowed(production, "Ingress", api, refused, port), (
                f"{name} takes traffic from {refused}"
            )
        assert not allowed(production, "Ingress", api, controller, port + 1000), f"{name} opens other ports"

    port = image_of(SERVICES["web"]).port
    assert allowed(production, "Ingress", web, controller, port)
    for refused in (pod_of(production, "Deployment", "orders"), stranger, Peer(address=OUTSIDE)):
        assert not allowed(production, "Ingress", web, refused, port), (
            f"the console takes traffic from {refused}"
        )


def test_each_workload_reaches_only_what_it_needs(production: list[Json]) -> None:
    secrets = example_secret_values()
    database = port_of(secrets[("deliveryhub-secrets", "ORDERS_DATABASE_URL")])
    broker = port_of(secrets[("deliveryhub-secrets", "ORDERS_AMQP_URL")])
    config_maps = {d["metadata"]["name"]: d["data"] for d in production if d["kind"] == "ConfigMap"}
    management = port_of(config_maps["broker-access-config"]["RABBITMQ_MANAGEMENT_URL"])
    outside = Peer(address=OUTSIDE)
    dns = Peer.pod(*CLUSTER_DNS)
    orders, delivery, web = (pod_of(production, "Deployment", name) for name in ("orders", "delivery", "web"))
    api_ports = {
        api: port_of(config_maps["web-config"][f"{name.upper()}_URL"])
        for api, name in ((orders, "orders"), (delivery, "delivery"))
    }

    workloads = {
        **{name: pod_of(production, "Deployment", name) for name in SERVICES},
        **{
            job["metadata"]["name"]: pod_of(production, "Job", job["metadata"]["name"])
            for job in production
            if job["kind"] == "Job"
        },
    }
    # What each may open; everything else is refused.
    needs: dict[str, set[tuple[Peer, int]]] = {name: set() for name in workloads}
    for name in ("orders", "delivery"):
        needs[name] = {(outside, database), (outside, broker)}
    needs["web"] = {(outside, database), *((api, port) for api, port in api_ports.items())}
    for name in ("orders-migrate", "delivery-migrate", "web-migrate"):
        needs[name] = {(outside, database)}
    needs["broker-access"] = {(outside, management)}

    candidates = {
        (outside, database),
        (outside, broker),
        (outside, management),
        (outside, 443),
        (web, image_of(SERVICES["web"]).port),
        *((api, port) for api, port in api_ports.items()),
    }
    for name, pod in workloads.items():
        assert allowed(production, "Egress", pod, dns, 53, "UDP"), f"{name} cannot resolve names"
        assert allowed(production, "Egress", pod, dns, 53, "TCP"), f"{name} cannot resolve long answers"
        for target, port in candidates:
            expected = (target, port) in needs[name]
            assert allowed(production, "Egress", pod, target, port) == expected, (
                f"{name} {'cannot' if expected else 'can'} reach {target} on {port}"
            )


def test_each_service_connects_to_its_database_as_the_role_that_owns_it() -> None:
    init = PostgresInit.read()
    roles: dict[str, str] = {}
    for name in SERVICES:
        url = urlsplit(environment_of(container_of(one("Deployment", name)))["DATABASE_URL"])
        owner = init.role_of(url.path.lstrip("/"))
        assert url.username == owner.name, f"{name} connects as {url.username}, not as its database's owner"
        roles[name] = owner.name
    assert len(set(roles.values())) == len(SERVICES), f"the services share a role: {roles}"
