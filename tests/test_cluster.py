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
