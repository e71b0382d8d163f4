"""The reader: exact windows at their boundaries, causal streaming, Dataset + DataLoader, and Zarr validity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from engine.errors import StoreError
from engine.reader import open_store
from engine.store import FeatureStore, ItemRows
from engine.torchdata import WindowDataset


def make_item(item_id: str, duration: float = 10.0) -> ItemRows:
    """An item with known rows: visual at 4 Hz, audio at 100 Hz (centres), text at segment starts; column 0 of
    every row is its own time."""
    tv = np.arange(0, duration, 0.25)
    ta = 0.0125 + np.arange(0, duration - 0.025, 0.01)
    starts, ends = np.array([0.5, 3.0, 6.5]), np.array([2.5, 6.0, 9.5])
    rng = np.random.default_rng(len(item_id))
    groups = {"visual": (np.c_[tv, rng.normal(size=(len(tv), 7))].astype(np.float32), tv),
              "audio": (np.c_[ta, rng.normal(size=(len(ta), 3))].astype(np.float32), ta),
              "text": (np.c_[starts, rng.normal(size=(3, 5))].astype(np.float32), starts)}
    labels = {"primary": np.array([3, 5, 0], np.int8), "intensity": np.array([2, 4, 5], np.int8),
              "goemotions": np.eye(3, 28, dtype=np.float32), "turning_points": np.array([1, 2], np.int32)}
    return ItemRows(item_id, {"duration_s": duration, "groups": list(groups), "lang": "en",
                              "source": f"{item_id}.mp4"}, groups,
                    {"start": starts, "end": ends, "text": np.array(["a", "b", "c"], dtype=object)}, labels)


GROUP_ATTRS = {"visual": {"rate_hz": 4.0}, "audio": {"rate_hz": 100.0}, "text": {}}
DIMS = {"visual": 8, "audio": 4, "text": 6}


def write_shard(store: FeatureStore, key: str, items: list[ItemRows], complete: bool = True):
    w = store.stage(key)
    w.write(items, GROUP_ATTRS, DIMS, pooled=False, dtype="float32")
    if complete:
        w.publish()  # else: a run killed before publishing leaves only a staging folder


@pytest.fixture()
def store_path(tmp_path):
    s = FeatureStore(tmp_path, "stream")
    s.create()
    write_shard(s, "ab", [make_item("film a", 10.0), make_item("film b", 6.0)])  # two items packed in one shard
    write_shard(s, "u", [make_item("unfinished", 6.0)], complete=False)
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
    base = feats  # a read-only view of the file's memory map, not a copy in RAM
    while not isinstance(base, np.memmap) and isinstance(base.base, np.ndarray):
        base = base.base
    assert isinstance(base, np.memmap) and not feats.flags.writeable
    z = zarr.open_group(str(store_path), mode="r")
    (shard,) = list(z.group_keys())
    # a user without this package finds film a's rows through the item ids and the row offsets
    ids = list(z[f"{shard}/items/id"][:])
    k = ids.index("film a")
    off = z[f"{shard}/visual/offsets"][:]
    np.testing.assert_array_equal(z[f"{shard}/visual/features"][off[k]:off[k + 1]], np.asarray(feats))
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(str(store_path), group=f"{shard}/audio", consolidated=False)
    assert ds["features"].dims == ("time", "feature") and ds["t"].dims == ("time",)
    assert ds["offsets"].dims == ("item_edge",)


def test_a_shard_carries_every_node_s_metadata_and_reads_the_same_without_it(store_path):
    """Each shard's zarr.json holds the metadata of every node below it (zarr's inline consolidated metadata: one
    file read per shard); it is exactly each node's own zarr.json, zarr and xarray use it, and a shard written
    without it (an older store) reads the same rows."""
    import json
    r = open_store(store_path)
    (shard,) = r.shards
    meta = json.loads((shard.path / "zarr.json").read_text())
    nodes = meta["consolidated_metadata"]["metadata"]
    on_disk = {str(p.parent.relative_to(shard.path)): json.loads(p.read_text())
               for p in shard.path.rglob("zarr.json") if p.parent != shard.path}
    assert nodes == on_disk and "visual/features" in nodes and "labels/primary" in nodes
    z = zarr.open_group(str(shard.path), mode="r")
    assert z.metadata.consolidated_metadata is not None
    np.testing.assert_array_equal(z["visual/t"][:], np.concatenate([r.item(i).groups["visual"].t for i in shard.ids]))
    xr = pytest.importorskip("xarray")
    assert xr.open_zarr(str(shard.path), group="text", consolidated=True)["features"].dims == ("time", "feature")
    before = {i: (r.window(i, 0, 99), r.item(i).labels) for i in r.items()}

    def same_as_before(reader):
        for i, (win, labels) in before.items():
            for g, w in reader.window(i, 0, 99).items():
                np.testing.assert_array_equal(w.features, win[g].features)
            assert reader.item(i).labels.keys() == labels.keys()
            for name, v in reader.item(i).labels.items():
                np.testing.assert_array_equal(v, labels[name])

    store = FeatureStore(store_path.parent, "stream")
    assert all("damaged" not in a for _, a in store.index().values())
    # a copy damaged but still JSON: the next run's check finds the shard damaged (and rewrites it); meanwhile a
    # copy that leaves out an array (a label would vanish from every item) is not used: each node's own file is
    # read and every row and label served; a copy that no longer describes an array is a clear error
    for damage in ("labels/intensity", "visual/t"):
        broken = json.loads(json.dumps(meta))
        nodes = broken["consolidated_metadata"]["metadata"]
        if damage.startswith("labels"):
            del nodes[damage]
        else:
            del nodes[damage]["shape"]
        (shard.path / "zarr.json").write_text(json.dumps(broken))
        assert all("its copy of the nodes' metadata differs" in a["damaged"] for _, a in store.index().values())
        if damage == "visual/t":
            with pytest.raises(StoreError, match="zarr.json: damaged metadata of visual/t"):
                open_store(store_path).window(shard.ids[0], 0, 99)
        else:
            again = open_store(store_path)
            assert again.shards[0].nodes is None
            same_as_before(again)
    del meta["consolidated_metadata"]
    (shard.path / "zarr.json").write_text(json.dumps(meta))
    old = open_store(store_path)
    assert old.shards[0].nodes is None
    same_as_before(old)


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
    reader = open_store(store_path)
    for i, (iid, t0, t1, k) in enumerate(seg.index):  # every sample's labels are its segment's
        lab, got = reader.item(iid).labels, seg[i]
        assert (got["label"], got["intensity"]) == (int(lab["primary"][k]), int(lab["intensity"][k]))
        np.testing.assert_array_equal(got["goemotions"].numpy(), lab["goemotions"][k])
        rows = reader.window(iid, t0, t1)["visual"].features
        want = rows.mean(0) if len(rows) else np.zeros(rows.shape[1])  # no rows: zeros, masked out
        np.testing.assert_allclose(got["features"]["visual"].numpy(), want, rtol=1e-6)
        assert bool(got["mask"]["visual"]) == (len(rows) > 0)
    assert seg[1]["features"]["visual"][0] == pytest.approx(np.arange(3.0, 6.0, 0.25).mean(), abs=1e-5)


def test_a_dataset_never_applies_its_index_to_a_shard_published_after_it(store_path):
    """A DataLoader worker started by spawn unpickles the dataset and opens the store afresh: when a shard was
    published again since the index was built (items re-extracted, rows moved), its samples must not be served
    from the new version's rows; an unchanged store reads the same samples."""
    import pickle
    ds = WindowDataset(store_path, by="segment", pool=True)
    want = [ds[i]["features"]["visual"] for i in range(len(ds))]
    same = pickle.loads(pickle.dumps(ds))
    for i, w in enumerate(want):
        torch.testing.assert_close(same[i]["features"]["visual"], w)
    fresh = pickle.loads(pickle.dumps(ds))
    s = FeatureStore(store_path.parent, "stream")
    write_shard(s, "ab", [make_item("film b", 6.0), make_item("film a", 10.0)])  # same items, other rows
    with pytest.raises(StoreError, match="shard ab was published again.*build the dataset again"):
        fresh[0]
    write_shard(s, "ab", [make_item("film a", 10.0)])  # and an item that left the store
    with pytest.raises(StoreError, match="1 item\\(s\\) of this WindowDataset \\('film b', ...\\) are no longer"):
        pickle.loads(pickle.dumps(ds))[0]
    for i, w in enumerate(want):  # the dataset built before keeps the version it mapped
        torch.testing.assert_close(ds[i]["features"]["visual"], w)


def test_unknown_items_are_a_clear_error(store_path, tmp_path):
    r = open_store(store_path)
    with pytest.raises(KeyError, match="unfinished"):
        r.item("unfinished")
    with pytest.raises(KeyError):
        r.item("../film a")
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "nothing.zarr")


def test_pooled_vectors_leave_out_frames_without_a_value(tmp_path):
    """A face absent from some frames (NaN rows) does not turn the clip's pooled vector into NaN."""
    store = FeatureStore(tmp_path, "static")
    store.create()
    t = np.arange(4) * 0.25
    face = np.array([[1, 0.5], [0, np.nan], [1, 0.7], [0, np.nan]], np.float32)
    none = np.array([[0, np.nan]] * 4, np.float32)
    items = [ItemRows(iid, {"duration_s": 1.0, "groups": ["face"]}, {"face": (x, t)},
                      {"start": np.zeros(1), "end": np.ones(1), "text": np.array(["x"], dtype=object)})
             for iid, x in (("seen", face), ("unseen", none))]
    w = store.stage("k")
    w.write(items, {"face": {}}, {"face": 2}, pooled=True, dtype="float32")
    w.publish()
    r = open_store(store.path)
    np.testing.assert_allclose(r.item("seen").pooled("face"), [0.5, 0.6], rtol=1e-6)
    assert r.item("unseen").pooled("face")[0] == 0 and np.isnan(r.item("unseen").pooled("face")[1])
    ds = WindowDataset(r, by="segment", pool=True)
    np.testing.assert_allclose(ds[0]["features"]["face"].numpy(), [0.5, 0.6], rtol=1e-6)


def test_a_pooled_sample_without_rows_is_zeros_and_masked_out(tmp_path):
    """An item whose modality has no rows at all (its shard's mean row is NaN) gives zeros and a False mask, never
    NaN features that would poison a masked loss."""
    store = FeatureStore(tmp_path, "static")
    store.create()
    seg = {"start": np.zeros(1), "end": np.ones(1), "text": np.array(["x"], dtype=object)}
    rows = {"some": np.ones((3, 2), np.float32), "none": np.zeros((0, 2), np.float32)}
    items = [ItemRows(iid, {"duration_s": 1.0, "groups": ["face"]}, {"face": (x, np.arange(len(x)) * 0.25)}, seg)
             for iid, x in rows.items()]
    w = store.stage("k")
    w.write(items, {"face": {}}, {"face": 2}, pooled=True, dtype="float32")
    w.publish()
    ds = WindowDataset(open_store(store.path), by="segment", pool=True)
    by_item = {ds.item_ids[n]: i for i, n in enumerate(ds.s_item)}
    empty, full = ds[by_item["none"]], ds[by_item["some"]]
    assert empty["features"]["face"].tolist() == [0.0, 0.0] and not bool(empty["mask"]["face"])
    assert full["features"]["face"].tolist() == [1.0, 1.0] and bool(full["mask"]["face"])
