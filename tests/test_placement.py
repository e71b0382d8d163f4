"""Placement on GPUs: any number of workers on any number of GPUs starts every actor, each on the GPU Ray gave it.

Ray's fake GPUs (``ray.init(num_gpus=2)`` on a CPU machine) are real Ray scheduling: Ray assigns GPU ids and sets
``CUDA_VISIBLE_DEVICES`` per actor exactly as on a GPU node. The check runs in a child process with a Ray of its
own, so it never meets the test session's Ray (which has no GPUs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER_COUNTS = (1, 2, 3, 5)
START_TIMEOUT_S = 60  # an actor that does not fit stays pending: it shows as a timeout, not a hang


def check(worker_counts=WORKER_COUNTS) -> dict:
    """For each worker count: the resources placement() asks and what every actor saw (run with a fake-GPU Ray)."""
    import ray

    from engine.pipeline.runner import placement

    @ray.remote
    class Probe:
        def where(self):
            from engine.pipeline.runner import device_id, ray_gpu_ids
            return {"gpu_ids": ray_gpu_ids(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "device_id": device_id(), "pid": os.getpid()}

    out = {}
    for w in worker_counts:
        n, resources = placement(w)
        actors = [Probe.options(**resources).remote() for _ in range(n)]
        try:
            seen = ray.get([a.where.remote() for a in actors], timeout=START_TIMEOUT_S)
        finally:
            for a in actors:
                ray.kill(a)
        out[str(w)] = {"n": n, "resources": resources, "actors": seen}
    return out


def test_any_number_of_workers_fits_on_two_gpus():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=4 * START_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for w in WORKER_COUNTS:
        r = result[str(w)]
        assert r["n"] == w and len(r["actors"]) == w  # every actor started
        assert len({a["pid"] for a in r["actors"]}) == w
        for a in r["actors"]:
            # one GPU each, the only one visible to it, and DALI's device_id points at it
            assert len(a["gpu_ids"]) == 1 and a["gpu_ids"][0] in ("0", "1")
            assert a["visible"] == a["gpu_ids"][0]
            assert a["device_id"] == 0
        used = [a["gpu_ids"][0] for a in r["actors"]]
        assert len(set(used)) == min(w, 2)  # both GPUs work once there are two actors
        assert max(used.count(g) for g in set(used)) <= -(-w // 2)  # and none holds more than its share
    assert result["1"]["resources"]["num_gpus"] == 1 and result["2"]["resources"]["num_gpus"] == 1
    assert result["3"]["resources"]["num_gpus"] == 0.5 and result["5"]["resources"]["num_gpus"] == 0.3333


if __name__ == "__main__":  # the child process: a Ray with two fake GPUs and two CPUs, like a small GPU node
    import ray
    # actors inherit PYTHONPATH from this process's environment (set by the test)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        print(json.dumps(check()))
    finally:
        ray.shutdown()
