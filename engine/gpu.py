"""Which GPU this process was given: Ray's assignment turned into the CUDA device number DALI and torch use.

Ray gives an actor GPUs by id and sets ``CUDA_VISIBLE_DEVICES`` to those ids, so inside the actor CUDA numbers the
visible GPUs from 0: the GPU Ray gave as id 1 is CUDA device 0 there. DALI's ``device_id`` and torch's
``cuda:N`` take that CUDA number.
"""
from __future__ import annotations

import os


def ray_gpu_ids() -> list[str]:
    """The GPU ids Ray gave this worker (empty outside a Ray worker, or when it was given none)."""
    try:
        import ray
        if not ray.is_initialized():
            return []
        return [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # not inside Ray (a plain script, a test): no assignment
        return []


def device_id() -> int:
    """The CUDA device number of the first GPU Ray gave this actor (0 when Ray gave none).

    >>> device_id()   # outside Ray
    0
    """
    ids = ray_gpu_ids()
    if not ids:
        return 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if ids[0] in visible:  # what Ray does: only its GPUs are visible, so this is usually 0
        return visible.index(ids[0])
    if not visible and ids[0].isdigit():  # visibility not narrowed: CUDA numbers every GPU, Ray's id is the number
        return int(ids[0])
    return 0
