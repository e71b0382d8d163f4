"""A job joins a two-node Ray cluster on this machine through --address, and both nodes do work."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.reader import open_store

from .conftest import FAST, make_corpus

ROOT = Path(__file__).resolve().parent.parent


def test_two_node_cluster_through_address(tmp_path):
    from ray.cluster_utils import Cluster

    films = {f"Node Film {k}": ("en", f"Node Film {k}", [("Hello there.", "Joy", 1.5), ("Go away.", "Anger", 1.5)])
             for k in range(4)}
    root = make_corpus(tmp_path / "emos", films)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "out"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
        r = subprocess.run([sys.executable, "-m", "engine.extract", "--split", "stream", "--root", str(root),
                            "--out", str(out), "--extractors", FAST, "--address", cluster.address, "--workers", "2",
                            "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        cluster.shutdown()
    report = json.loads((out / "stream.report.json").read_text())
    assert report["counts"] == {"ok": 4}
    assert len({i["node"] for i in report["items"]}) == 2  # one actor per node, both used
    assert open_store(out / "stream.zarr").items() == sorted(films)


def test_a_local_ray_s_actors_get_the_engine_environment(tmp_path):
    """A local Ray's workers inherit the driver's environment (no runtime_env: it cost every actor ~0.5 s of its
    start): the project on their path, and glibc's arenas capped so that a long-lived actor's memory stays flat."""
    code = (
        "import os, json, ray\n"
        "from engine.pipeline.runner import init_ray\n"
        "init_ray(None, quiet=True)\n"
        "@ray.remote\n"
        "def env():\n"
        "    import tests.toy_plugins\n"  # importable only through PYTHONPATH (tests/ is not installed)
        "    return [os.environ.get('MALLOC_ARENA_MAX'), os.environ.get('PYTHONPATH', '').split(os.pathsep)]\n"
        "print(json.dumps(ray.get(env.remote())))\n"
        "ray.shutdown()\n")
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "PYTHONPATH", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    arena, paths = json.loads(out.stdout.strip().splitlines()[-1])
    assert arena == "2" and paths[0] == root


def test_a_local_ray_s_monitor_is_stopped_before_ray_shuts_down(tmp_path):
    """The Ray a run started stops without waiting on its autoscaler monitor, which answers SIGTERM by writing to
    the GCS that Ray's shutdown stops first (it hung there until Ray killed it a second later): the monitor is
    gone before Ray's own shutdown begins."""
    code = (
        "import json, ray, ray._private.node as nd, ray._private.worker as w\n"
        "from engine.pipeline.runner import init_ray, shutdown_ray\n"
        "init_ray(None, quiet=True)\n"
        "monitors = [p.process for p in w._global_node.all_processes.get('monitor', [])]\n"
        "alive_then = []\n"
        "kill_all = nd.Node.kill_all_processes\n"
        "def spy(self, *a, **k):\n"
        "    alive_then.extend(m.poll() is None for m in monitors)\n"
        "    return kill_all(self, *a, **k)\n"
        "nd.Node.kill_all_processes = spy\n"
        "shutdown_ray()\n"
        "print(json.dumps([len(monitors), alive_then, [m.poll() is None for m in monitors]]))\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    n, alive_at_shutdown, alive_after = json.loads(out.stdout.strip().splitlines()[-1])
    assert n == 1 and alive_at_shutdown == [False] and alive_after == [False]
