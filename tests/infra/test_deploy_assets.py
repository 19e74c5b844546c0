"""Deployment assets in infra/deploy: they parse, and the references between them hold.

Images, ports, hosts, bucket and credentials must agree across the Dockerfiles, the compose stack
and the KubeRay cluster, and every environment variable they set for our images must be one the
code really reads (infra/settings.py fields, the model's MOVA_ATTENTION / MOVA_COMPILE and
prefect.yaml).
Nothing is built here: building and running need a Docker daemon (see infra/deploy/README.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "infra" / "deploy"
SERVICE_IMAGE, WORKER_IMAGE = "mova-ads-service:latest", "mova-ads-render-worker:latest"
DOCKERFILES = {SERVICE_IMAGE: "Dockerfile.service", WORKER_IMAGE: "Dockerfile.render-worker"}
# Read by libraries our images run, not by our code: boto3's credentials, Python and pip.
THIRD_PARTY = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PYTHONDONTWRITEBYTECODE",
               "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
               "RAY_worker_niceness"}  # read by Ray's raylet (test below)


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        instruction, _, args = full.partition(" ")
        assert instruction.isupper(), f"{path.name}: cannot parse {full!r}"
        out.append((instruction, args.strip()))
    assert not pending, f"{path.name}: ends inside a continued line"
    return out


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in instructions:
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def raycluster() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "kuberay-raycluster.yaml").read_text())
    assert isinstance(data, dict)
    return data


def command_flag(command: list[str], flag: str) -> str:
    for part in command:
        if part.startswith(f"{flag}="):
            return part.split("=", 1)[1]
    index = command.index(flag)
    return command[index + 1]


def read_by_code(name: str) -> bool:
    """A Settings field, or named in our Python sources or prefect.yaml."""
    if name.lower() in Settings.model_fields:
        return True
    sources = [p for pkg in ("mova_model", "infra", "app", "tasks", "flows", "schemas")
               for p in (REPO / pkg).rglob("*.py")]
    if any(f'"{name}"' in p.read_text() for p in sources):
        return True
    return f"${name}" in (REPO / "prefect.yaml").read_text()


def our_envs() -> dict[str, dict[str, str]]:
    """Environment of every container running one of our images, by where it is set."""
    envs: dict[str, dict[str, str]] = {}
    for name in DOCKERFILES.values():
        envs[name] = dockerfile_env(parse_dockerfile(DEPLOY / name))
    for svc_name, svc in compose()["services"].items():
        if svc.get("image") in DOCKERFILES:
            envs[f"compose:{svc_name}"] = {k: str(v) for k, v in svc.get("environment", {}).items()}
    spec = raycluster()["spec"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g)
                                                  for g in spec["workerGroupSpecs"]]
    for group, g in groups:
        for container in g["template"]["spec"]["containers"]:
            envs[f"kuberay:{group}"] = {e["name"]: e["value"] for e in container.get("env", [])}
    return envs


# ---- Dockerfiles -----------------------------------------------------------------------------


def test_dockerfiles_parse_copy_real_sources_and_pin_the_same_torch() -> None:
    pin = next(d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
               ["dependencies"] if d.startswith("torch=="))
    bases = set()
    for name in DOCKERFILES.values():
        instructions = parse_dockerfile(DEPLOY / name)
        assert instructions[0][0] in ("FROM", "ARG")
        bases.add(next(args for ins, args in instructions if ins == "FROM"))
        for instruction, args in instructions:
            if instruction == "COPY":
                *sources, _ = args.split()
                for source in sources:
                    assert (REPO / source).exists(), f"{name}: COPY {source} does not exist"
        runs = " ".join(args for ins, args in instructions if ins == "RUN")
        assert f"pip install {pin} " in runs, f"{name}: torch not pinned to {pin}"
        assert "pip install ." in runs and "ffmpeg" in runs
        assert any(ins in ("CMD", "ENTRYPOINT") for ins, _ in instructions)
    # Ray needs the same Python on the head, the driver and the workers
    assert len(bases) == 1
    service = " ".join(a for i, a in parse_dockerfile(DEPLOY / "Dockerfile.service") if i == "RUN")
    worker = parse_dockerfile(DEPLOY / "Dockerfile.render-worker")
    assert "whl/cpu" in service
    assert any(i == "ARG" and "whl/cu" in a for i, a in worker)


def test_service_port_and_command_agree_with_compose() -> None:
    instructions = parse_dockerfile(DEPLOY / "Dockerfile.service")
    exposed = {a for i, a in instructions if i == "EXPOSE"}
    svc = compose()["services"]["service"]
    port = command_flag(svc["command"], "--port")
    assert exposed == {port} and f"{port}:{port}" in svc["ports"]
    cmd = next(a for i, a in instructions if i == "CMD")
    assert f'"--port", "{port}"' in cmd


# ---- compose -------------------------------------------------------------------------------


def test_compose_images_builds_and_dependencies() -> None:
    services = compose()["services"]
    built = {s["image"]: s["build"] for s in services.values() if "build" in s}
    assert set(built) == set(DOCKERFILES)
    for image, build in built.items():
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO and build["dockerfile"] == f"infra/deploy/{DOCKERFILES[image]}"
    for name, svc in services.items():
        image = svc["image"]
        assert image in DOCKERFILES or "/" in image or ":" in image, (name, image)
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"
    wanted = {"postgres", "minio", "prefect-server", "prefect-worker", "ray-head",
              "ray-worker-gpu", "service"}
    assert wanted <= set(services)
    gpu = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert services["ray-worker-gpu"]["image"] == WORKER_IMAGE


def test_compose_addresses_point_at_the_right_services() -> None:
    services = compose()["services"]
    env = services["service"]["environment"]
    # PostgreSQL: host, port, user, password and database of the postgres service
    db = urlsplit(env["DATABASE_URL"])
    pg = services["postgres"]
    assert (db.hostname, db.port) == ("postgres", 5432) and "5432:5432" in pg["ports"]
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_PASSWORD"],
        pg["environment"]["POSTGRES_DB"])
    # S3: the MinIO endpoint, its root credentials and the bucket minio-init creates
    s3 = urlsplit(env["S3_ENDPOINT_URL"])
    minio = services["minio"]
    assert (s3.hostname, s3.port) == ("minio", 9000) and "9000:9000" in minio["ports"]
    assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    bucket = urlsplit(env["STORAGE_URL"]).netloc
    assert f"store/{bucket}" in services["minio-init"]["entrypoint"][-1]
    # Prefect: the API port of the server; its database exists (postgres-init.sql)
    prefect_api = urlsplit(env["PREFECT_API_URL"])
    server = services["prefect-server"]
    assert prefect_api.hostname == "prefect-server"
    assert str(prefect_api.port) == command_flag(server["command"], "--port")
    prefect_db = urlsplit(server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert prefect_db.hostname == "postgres"
    assert f"CREATE DATABASE {prefect_db.path.lstrip('/')}" in (
        DEPLOY / "postgres-init.sql").read_text()
    # Prefect worker: the work pool of prefect.yaml
    pools = {d["work_pool"]["name"] for d in yaml.safe_load(
        (REPO / "prefect.yaml").read_text())["deployments"]}
    worker_cmd = services["prefect-worker"]["command"][-1]
    assert all(f"--pool {pool}" in worker_cmd for pool in pools)
    # Ray: the client port (drivers) and the GCS port (workers) of the head
    head = services["ray-head"]["command"]
    ray = urlsplit(env["RAY_ADDRESS"])
    assert ray.scheme == "ray" and ray.hostname == "ray-head"
    assert str(ray.port) == command_flag(head, "--ray-client-server-port")
    worker_env = services["ray-worker-gpu"]["environment"]
    assert worker_env["RAY_HEAD"] == f"ray-head:{command_flag(head, '--port')}"
    worker_cmd = next(a for i, a in parse_dockerfile(DEPLOY / "Dockerfile.render-worker")
                      if i == "CMD")
    assert "--address=${RAY_HEAD}" in worker_cmd
    # the checkpoint lies under the read-only model mount
    assert env["MOVA_CHECKPOINT"].startswith("/models/")
    assert any(v.endswith(":/models:ro") for v in services["ray-worker-gpu"]["volumes"])


def test_compose_environment_is_valid_settings() -> None:
    for name, svc in compose()["services"].items():
        if svc.get("image") in DOCKERFILES:
            env = {k: str(v) for k, v in svc["environment"].items()}
            settings = load_settings(env)  # raises on a value the pipeline cannot use
            assert settings.database.startswith("postgresql+psycopg://"), name
            assert settings.storage.startswith("s3://") and settings.mova_device == "cuda"


# ---- KubeRay -------------------------------------------------------------------------------


def test_raycluster_has_a_gpu_worker_group_on_our_images() -> None:
    cluster = raycluster()
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    head = cluster["spec"]["headGroupSpec"]
    head_container = head["template"]["spec"]["containers"][0]
    assert head_container["image"] == SERVICE_IMAGE
    ports = {p["name"]: p["containerPort"] for p in head_container["ports"]}
    compose_client = urlsplit(compose()["services"]["service"]["environment"]["RAY_ADDRESS"]).port
    assert ports["client"] == int(head["rayStartParams"]["ray-client-server-port"]) \
        == compose_client
    assert head["rayStartParams"]["num-gpus"] == "0"
    (group,) = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    container = group["template"]["spec"]["containers"][0]
    assert container["image"] == WORKER_IMAGE
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == group["rayStartParams"]["num-gpus"] == "1"
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"] for v in group["template"]["spec"]["volumes"]}
    assert set(mounts) <= volumes and mounts["checkpoints"]["readOnly"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MOVA_CHECKPOINT"].startswith(mounts["checkpoints"]["mountPath"] + "/")
    assert load_settings(env).mova_device == "cuda"


# ---- environment variables -------------------------------------------------------------------


def test_every_variable_set_for_our_images_is_read() -> None:
    unread = {f"{where}: {name}" for where, env in our_envs().items() for name in env
              if name not in THIRD_PARTY and not read_by_code(name)
              and not (name == "RAY_HEAD" and where == "compose:ray-worker-gpu")}
    assert not unread, f"set but read by nothing: {sorted(unread)}"


def test_the_checker_catches_an_unread_variable() -> None:
    assert read_by_code("DATABASE_URL") and read_by_code("MOVA_ATTENTION")
    assert read_by_code("MOVA_ADS_HOME")  # prefect.yaml's pull step
    assert not read_by_code("MOVA_RENDER_GPUS")  # a plausible typo of RENDER_GPUS_PER_WORKER


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30,
                           check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="no docker compose plugin on this machine")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config",
                             "-q"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_render_worker_nodes_start_their_actors_at_the_pipelines_niceness() -> None:
    """A cluster node's raylet gives its workers RAY_worker_niceness (Ray's default: 15); a
    local Ray gets WORKER_NICENESS from ensure_ray. Both the same, so a render actor is not
    niced below the ffmpeg work beside it on one node and not on the other."""
    from infra.gpu_pool import WORKER_NICENESS

    env = dockerfile_env(parse_dockerfile(DEPLOY / DOCKERFILES[WORKER_IMAGE]))
    assert env["RAY_worker_niceness"] == str(WORKER_NICENESS)
