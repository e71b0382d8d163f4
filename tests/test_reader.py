"""The reader: exact windows at their boundaries, causal streaming, Dataset + DataLoader, and Zarr validity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from engine.reader import open_store
from engine.store import FeatureStore
from engine.torchdata import WindowDataset


def write_item(store: FeatureStore, item_id: str, duration: float = 10.0, complete: bool = True):
    """An item with known rows: visual at 4 Hz, audio at 100 Hz (centres), text at segment starts."""
    w = store.stage(item_id, {"source": f"{item_id}.mp4", "lang": "en"})
    tv = np.arange(0, duration, 0.25)
    ta = 0.0125 + np.arange(0, duration - 0.025, 0.01)
    starts, ends = np.array([0.5, 3.0, 6.5]), np.array([2.5, 6.0, 9.5])
    rng = np.random.default_rng(len(item_id))
    w.write_modality("visual", np.c_[tv, rng.normal(size=(len(tv), 7))].astype(np.float32), tv, {"rate_hz": 4.0})
    w.write_modality("audio", np.c_[ta, rng.normal(size=(len(ta), 3))].astype(np.float32), ta, {"rate_hz": 100.0})
    w.write_modality("text", np.c_[starts, rng.normal(size=(3, 5))].astype(np.float32), starts, {})
    w.write_array("segments/start", starts, ("segment",))
    w.write_array("segments/end", ends, ("segment",))
    w.write_array("segments/text", np.array(["a", "b", "c"], dtype=object), ("segment",))
    w.write_array("labels/primary", np.array([3, 5, 0], np.int8), ("segment",))
    w.write_array("labels/intensity", np.array([2, 4, 5], np.int8), ("segment",))
    w.write_array("labels/goemotions", np.eye(3, 28, dtype=np.float32), ("segment", "label"))
    attrs = {"duration_s": duration, "groups": ["visual", "audio", "text"], "lang": "en"}
    if complete:
        w.publish(attrs)
    else:  # a run killed before publishing leaves only a staging folder
        w.group.attrs.update(attrs)
    return tv, ta


@pytest.fixture()
def store_path(tmp_path):
    s = FeatureStore(tmp_path, "stream")
    s.create()
    write_item(s, "film a", 10.0)
    write_item(s, "film b", 6.0)
    write_item(s, "unfinished", 6.0, complete=False)
    return s.path


def test_windows_are_exact_at_their_boundaries(store_path):
    r = open_store(store_path)
    assert r.items() == ["film a", "film b"]  # the unfinished item is never visible
    for t0, t1 in [(0.0, 1.0), (0.25, 0.75), (2.5, 2.75), (1.0125, 1.0225), (3.0, 3.0), (9.0, 20.0), (-5, 0.0)]:
        w = r.window("film a", t0, t1)
        for name, win in w.items():
            full_t = r.item("film a").groups[name].t
            want = full_t[(full_t >= t0) & (full_t < t1)]
            np.testing.assert_array_equal(win.t, want)
            np.testing.assert_array_equal(win.features[:, 0], want.astype(np.float32))  # column 0: own time
    w = r.window("film a", 0.25, 0.75)
    assert w["visual"].t.tolist() == [0.25, 0.5] and len(w["audio"].t) == 50 and w["text"].t.tolist() == [0.5]


def test_memory_mapped_and_valid_zarr(store_path):
    r = open_store(store_path)
    feats = r.item("film a").groups["visual"].features
    assert isinstance(feats, np.memmap)
    z = zarr.open_group(str(store_path), mode="r")
    np.testing.assert_array_equal(z["film a/visual/features"][:], np.asarray(feats))
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(str(store_path), group="film a/audio", consolidated=False)
    assert ds["features"].dims == ("time", "feature") and ds["t"].dims == ("time",)


def test_streaming_is_causal(store_path):
    r = open_store(store_path)
    steps = list(r.stream("film b", hop_s=1.0, lookback_s=2.0))
    assert [s.t for s in steps] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    for s in steps:
        for win in s.features.values():
            assert np.all(win.t < s.t) and np.all(win.t >= s.t - 2.0)
    assert [s.segment for s in steps] == [0, 0, 0, 1, 1, 1]  # the latest segment that has started
    full = list(r.stream("film b", hop_s=2.5))  # no lookback: everything so far
    assert full[-1].t == 6.0 and full[-1].features["visual"].t[0] == 0.0


def test_dataset_windows_and_segments_with_dataloader_workers(store_path):
    ds = WindowDataset(store_path, window_s=2.0, hop_s=1.0)
    assert len(ds) == 9 + 5
    assert ds.max_rows == {"visual": 8, "audio": 200, "text": 1}
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    seen = 0
    for batch in loader:
        for k in range(len(batch["t0"])):
            t0, t1 = float(batch["t0"][k]), float(batch["t1"][k])
            m = batch["mask"]["visual"][k]
            tv = batch["features"]["visual"][k][m][:, 0].numpy()
            np.testing.assert_allclose(tv, np.arange(t0, t1, 0.25), atol=1e-6)
            seen += 1
    assert seen == len(ds)
    first = ds[0]  # [0, 2) overlaps segment 0 ([0.5, 2.5)) most
    assert first["label"] == 3 and first["intensity"] == 2 and first["goemotions"][0] == 1
    seg = WindowDataset(store_path, by="segment", pool=True, groups=["visual", "text"])
    assert len(seg) == 6 and seg[1]["label"] == 5
    assert seg[1]["features"]["visual"][0] == pytest.approx(np.arange(3.0, 6.0, 0.25).mean(), abs=1e-5)


def test_unknown_items_are_a_clear_error(store_path, tmp_path):
    r = open_store(store_path)
    with pytest.raises(KeyError, match="unfinished"):
        r.item("unfinished")
    with pytest.raises(KeyError):
        r.item("../film a")
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "nothing.zarr")
