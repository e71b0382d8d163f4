"""A dataset and a decode backend added from one module outside engine/, run end to end by name."""
from __future__ import annotations

import json

import numpy as np

from engine.media import solid, tone, write_media
from engine.reader import open_store


def test_a_toy_dataset_and_a_toy_backend_run_end_to_end(tmp_path, run_extract):
    root = tmp_path / "toy"
    root.mkdir()
    for k in range(3):
        write_media(str(root / f"clip{k}.mp4"), 1.0 + 0.5 * k, fps=8, size=(48, 32),
                    frame_fn=lambda t, k=k: solid(48, 32, 40 * k + int(t * 50)), audio_fn=tone(220 + 100 * k))
        (root / f"clip{k}.txt").write_text(f"toy sentence {k}", encoding="utf-8")
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("decode: {backend: 'tests.toy_plugins:toy', device: cpu}\n")
    out = tmp_path / "out"
    code, printed = run_extract("--split", "tests.toy_plugins:toy", "--root", root, "--out", out, "--config", cfg,
                                "--extractors", "frame_stats,logmel,e5_small")
    assert code == 0, printed
    assert "3 item(s): 3 written" in printed
    store = open_store(out / "toy.zarr")
    assert store.items() == ["clip0", "clip1", "clip2"]
    assert len(store.shards) == 2  # the toy packs two clips per shard
    view = store.item("clip2")
    assert view.attrs["decode"]["backend"] == "tests.toy_plugins:toy"
    t = view.groups["visual"].t
    np.testing.assert_allclose(t, np.arange(0, 2.0, 0.25), atol=1e-6)  # the 4 fps grid of an 8 fps clip
    assert view.segments["text"].tolist() == ["toy sentence 2"]
    assert view.pooled("audio").shape == (64,)  # clip-level: the dataset asked for pooled vectors
    report = json.loads((out / "toy.report.json").read_text())
    assert report["decode"]["backend"] == "tests.toy_plugins:toy"
