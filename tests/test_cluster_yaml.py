"""cluster.yaml: valid for Ray's cluster launcher, and it offers every resource the job asks for.

The requests are taken from the code, not copied here: RunConfig.worker_num_cpus for the
fragmenting actors, and the options `rayfold.runtime.clustering.cluster_fragments` actually passes to
`ray.remote` (recorded with a stand-in `ray` module, no Ray started) for the TM-align, prefilter
and Foldseek tasks.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from rayfold.cluster.rules import ClusterConfig
from rayfold.config import RunConfig
from rayfold.model.fragset import FragmentSet
from rayfold.runtime import clustering

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO_ROOT / "cluster.yaml"
FOLDSEEK_RESOURCE = clustering.FOLDSEEK_RESOURCE
IAM_PROFILE_ARN = re.compile(r"^arn:aws:iam::\d{12}:instance-profile/[\w+=,.@/-]+$")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def node_types(config: dict) -> dict:
    return config["available_node_types"]


@pytest.fixture(scope="module")
def workers(config: dict, node_types: dict) -> dict:
    return {name: t for name, t in node_types.items() if name != config["head_node_type"]}


def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


# --- the file as Ray's cluster launcher reads it ----------------------------------------------


def test_valid_against_rays_autoscaler_schema(config: dict) -> None:
    schema = _ray_schema()
    try:
        import jsonschema
    except ImportError:  # ray depends on jsonschema, but keep a structural check if it is absent
        assert set(config) <= set(schema["properties"]), set(config) - set(schema["properties"])
        for key in schema["required"]:
            assert key in config
        node_schema = schema["properties"]["available_node_types"]["patternProperties"][".*"]
        for name, node in config["available_node_types"].items():
            assert set(node) <= set(node_schema["properties"]), (name, set(node) - set(node_schema["properties"]))
            for key in node_schema["required"]:
                assert key in node, (name, key)
            for resource, amount in node["resources"].items():
                assert isinstance(amount, int) and amount >= 0, (name, resource, amount)
        return
    jsonschema.validate(config, schema)


def test_rays_own_preparation_accepts_it(config: dict) -> None:
    """What `ray up` does before launching: defaults merged, then Ray's own validation."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    prepared = util.prepare_config(copy.deepcopy(config))
    util.validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_aws_provider_with_region(config: dict) -> None:
    assert config["provider"]["type"] == "aws"
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", config["provider"]["region"])
    assert config["idle_timeout_minutes"] > 0


def test_min_workers_at_most_max_workers(config: dict, workers: dict) -> None:
    for name, node in workers.items():
        assert 0 <= node.get("min_workers", 0) <= node["max_workers"], name
        assert node["max_workers"] <= config["max_workers"], name
    assert sum(node.get("min_workers", 0) for node in workers.values()) <= config["max_workers"]


def test_head_node_takes_no_work(config: dict, node_types: dict) -> None:
    head = node_types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must advertise CPU 0 so that no task runs there"
    assert FOLDSEEK_RESOURCE not in head["resources"]


def test_docker_image_set(config: dict) -> None:
    image = config["docker"].get("image") or ""
    assert image and ":" in image and not image.endswith(":latest"), "pin a tagged image"
    assert image != "rayproject/ray:latest"


def test_every_node_type_has_an_iam_instance_profile(node_types: dict) -> None:
    for name, node in node_types.items():
        arn = node["node_config"].get("IamInstanceProfile", {}).get("Arn", "")
        assert IAM_PROFILE_ARN.match(arn), (name, arn)


def test_setup_installs_rayfold(config: dict) -> None:
    commands = config["setup_commands"] + config.get("worker_setup_commands", [])
    assert any("pip install" in c and "rayfold" in c for c in commands)


# --- the resources the job asks for -----------------------------------------------------------


def test_fragment_actors_fit_a_worker(workers: dict) -> None:
    need = RunConfig().worker_num_cpus
    assert need > 0
    assert any(node["resources"].get("CPU", 0) >= need for node in workers.values())


class _Submitted(Exception):
    """Raised by the stand-in ray at the first task submission: the requests are recorded by then."""


def _fake_ray(nodes: list[dict], recorded: list[dict]) -> types.ModuleType:
    """A stand-in `ray` for a cluster whose nodes offer `nodes` (one resource dict per node)."""
    ray = types.ModuleType("ray")
    total: dict[str, float] = {}
    for node in nodes:
        for resource, amount in node.items():
            if amount:
                total[resource] = total.get(resource, 0) + amount

    class _Remote:
        def __init__(self, fn, options: dict) -> None:
            recorded.append({"function": fn.__name__, **options})

        def remote(self, *args, **kwargs):
            raise _Submitted

    def remote(*args, **options):
        if args and callable(args[0]) and not options:
            return _Remote(args[0], {})
        return lambda fn: _Remote(fn, options)

    def missing(name: str):
        raise AttributeError(f"the stand-in ray of {__name__} has no {name!r}: add it to _fake_ray")

    ray.remote = remote
    ray.cluster_resources = lambda: dict(total)
    ray.available_resources = lambda: dict(total)
    ray.nodes = lambda: [{"Alive": True, "Resources": {k: float(v) for k, v in n.items() if v}} for n in nodes]
    ray.put = lambda value: value
    ray.get = lambda ref: ref
    ray.is_initialized = lambda: True
    ray.ObjectRef = type("ObjectRef", (), {})
    ray.__getattr__ = missing
    return ray


def _requests(monkeypatch, tmp_path: Path, engine: str, nodes: list[dict]) -> list[dict]:
    """The ray.remote options cluster_fragments uses up to its first task, on a given cluster."""
    recorded: list[dict] = []
    monkeypatch.setitem(sys.modules, "ray", _fake_ray(nodes, recorded))
    binary = None
    if engine == "foldseek":
        binary = tmp_path / "foldseek"
        binary.write_text("#!/bin/sh\necho 9.427df8a\n")
        binary.chmod(0o755)
    rng = np.random.default_rng(0)
    fragments = FragmentSet.from_arrays(
        ["a_f1", "b_f1", "c_f1"], [rng.normal(size=(40, 3)) * 5 for _ in range(3)], ["A" * 40] * 3,
        np.array([90.0, 85.0, 80.0]), ["D" * 40] * 3,
    )
    with pytest.raises(_Submitted):
        clustering.cluster_fragments(fragments, config=ClusterConfig(engine=engine),
                                   foldseek=str(binary) if binary else None, progress=False)
    return recorded


def _full_cluster(config: dict, node_types: dict, *, only: str | None = None) -> list[dict]:
    """Resources of every node: the head plus each worker type at max_workers (or one node of `only`)."""
    nodes = []
    for name, node in node_types.items():
        if name == config["head_node_type"]:
            count = 1
        elif only is None:
            count = node["max_workers"]
        else:
            count = 1 if name == only else 0
        nodes += [dict(node["resources"]) for _ in range(count)]
    return nodes


def _fits_one_node(request: dict, workers: dict) -> bool:
    need = {"CPU": request.get("num_cpus", 1), **request.get("resources", {})}
    return any(all(node["resources"].get(k, 0) >= v for k, v in need.items()) for node in workers.values())


def _foldseek_type(workers: dict) -> dict:
    offering = [node for node in workers.values() if node["resources"].get(FOLDSEEK_RESOURCE, 0) >= 1]
    assert len(offering) == 1, f"exactly one node type should offer the {FOLDSEEK_RESOURCE!r} resource"
    return offering[0]


def test_builtin_engine_tasks_fit_a_worker(monkeypatch, tmp_path, config, node_types, workers) -> None:
    requests = _requests(monkeypatch, tmp_path, "builtin", _full_cluster(config, node_types))
    assert len(requests) >= 2, requests  # the TM-align tasks and the prefilter tasks
    for request in requests:
        assert _fits_one_node(request, workers), request


def test_foldseek_node_offers_the_resource_and_threads(config, node_types, workers) -> None:
    node = _foldseek_type(workers)
    threads = ClusterConfig().foldseek_threads
    # 0 means "all CPUs of the node the Foldseek step runs on"; an explicit count must fit that node
    assert node["resources"]["CPU"] >= max(threads, 1)
    assert node["max_workers"] >= 1


def test_foldseek_task_fits_its_node_when_it_is_the_only_worker(monkeypatch, tmp_path, config, node_types,
                                                                 workers) -> None:
    name = next(n for n, t in workers.items() if t["resources"].get(FOLDSEEK_RESOURCE, 0) >= 1)
    requests = _requests(monkeypatch, tmp_path, "foldseek", _full_cluster(config, node_types, only=name))
    foldseek = [r for r in requests if "foldseek" in r["function"].lower()]
    assert foldseek, requests
    for request in foldseek:
        assert request.get("resources", {}).get(FOLDSEEK_RESOURCE) == 1, request
        assert _fits_one_node(request, workers), request


def test_foldseek_task_fits_its_node_on_a_full_cluster(monkeypatch, tmp_path, config, node_types, workers) -> None:
    requests = _requests(monkeypatch, tmp_path, "foldseek", _full_cluster(config, node_types))
    assert requests
    for request in requests:
        assert _fits_one_node(request, workers), request
