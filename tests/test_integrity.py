"""Nothing silently wrong: a damaged store is refused and recomputed, damaged media fail, a reader never sees half
an item, bad reader arguments are errors, and metadata problems are warnings or errors instead of silent drops."""
from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest

from engine.config import load_config
from engine.datasets import discover
from engine.datasets.demo import write_film
from engine.datasets.emos_stream import STREAM_DIR
from engine.errors import StoreError
from engine.extract import make_groups
from engine.media import solid, tone, write_media
from engine.pipeline.worker import ShardProcessor, process_items
from engine.reader import open_store
from engine.records import RunPlan
from engine.store import FeatureStore, ItemRows

from .conftest import FAST

LINES = [("One sentence here.", "Joy", 1.2), ("Another one there.", "Anger", 1.2)]


def films(root, names, fps=10):
    for k, name in enumerate(names):
        write_film(root, name, "en", name, LINES, fps=fps, size=(64, 48), seed=k)
    return root


def local_run(root, out, extractors="frame_stats,logmel"):
    FeatureStore(out, "stream").create()
    plan = RunPlan(out=str(out), split="stream", groups=make_groups(load_config(), extractors),
                   decode={"backend": "pyav", "short_side": 64})
    return {r.id: r for r in process_items(ShardProcessor(plan), discover("stream", root), shard_items=1)}


# ------------------------------------------------------------------------------------------------ damaged store
def _chunk_of(store_path, item, group):
    return open_store(store_path).item(item).shard.path / group / "features" / "c" / "0" / "0"


def test_a_damaged_store_is_refused_by_name_and_recomputed_by_the_next_run(tmp_path, run_extract):
    root = films(tmp_path / "emos", ["Deleted", "Truncated", "Broken Meta", "Broken Shard", "Fine"])
    out = tmp_path / "out"
    args = ("--split", "stream", "--root", root, "--out", out, "--extractors", FAST)
    assert run_extract(*args)[0] == 0
    store = out / "stream.zarr"
    deleted = _chunk_of(store, "Deleted", "visual")
    deleted.unlink()
    truncated = _chunk_of(store, "Truncated", "audio")
    truncated.write_bytes(truncated.read_bytes()[:100])
    meta = _chunk_of(store, "Broken Meta", "text").parents[3] / "t" / "zarr.json"
    text_rows = open_store(store).window("Broken Meta", 0, 99)["text"]
    meta.write_text("{ not json")
    shard_meta = open_store(store).item("Broken Shard").shard.path / "zarr.json"
    shard_meta.write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"complete": tr')
    # the reader refuses each damaged array, naming the file; it never serves zeros
    with pytest.raises(StoreError, match="Broken Shard|zarr.json"):
        open_store(store)
    shard_meta.unlink()  # a shard without metadata is not part of the store for a reader
    reader = open_store(store)
    for item, path in (("Deleted", deleted), ("Truncated", truncated)):
        with pytest.raises(StoreError) as err:
            reader.window(item, 0, 99)
        assert str(path) in str(err.value) or str(path.parent) in str(err.value)
    # an array's own zarr.json is not what the reader reads: the shard's consolidated copy serves the same rows
    again = reader.window("Broken Meta", 0, 99)["text"]
    np.testing.assert_array_equal(again.t, text_rows.t)
    np.testing.assert_array_equal(again.features, text_rows.features)
    np.testing.assert_array_less(-1, len(reader.window("Fine", 0, 99)["visual"].t))
    shard_meta.write_text("{ broken")
    # the next run sees the damage (cheap checks of sizes and metadata) and recomputes what it touches
    code, printed = run_extract(*args)
    assert code == 0, printed
    report = {r["id"]: r["status"] for r in json.loads((out / "stream.report.json").read_text())["items"]}
    assert report == {"Deleted": "ok", "Truncated": "ok", "Broken Meta": "ok", "Broken Shard": "ok",
                      "Fine": "cached"}
    reader = open_store(store)
    assert reader.items() == sorted(report)
    for item in reader.items():
        assert all(len(w.t) > 0 for w in reader.window(item, 0, 99).values())


def test_inspect_verify_finds_changed_content_that_cheap_checks_cannot(tmp_path):
    from engine.inspect import main as inspect_main
    root = films(tmp_path / "emos", ["A"])
    out = tmp_path / "out"
    assert local_run(root, out)["A"].status == "ok"
    store = out / "stream.zarr"
    assert inspect_main([str(store), "--verify"]) == 0
    chunk = _chunk_of(store, "A", "audio")
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF  # same size: only the digest tells
    chunk.write_bytes(bytes(data))
    assert inspect_main([str(store)]) == 0
    assert inspect_main([str(store), "--verify"]) == 1


# ------------------------------------------------------------------------------------------------ damaged media
def test_media_damaged_in_the_middle_fail_instead_of_being_published_short(tmp_path):
    root = films(tmp_path / "emos", ["Zeroed", "Whole"])
    media = root / STREAM_DIR / "Zeroed" / "Zeroed.mp4"
    data = bytearray(media.read_bytes())
    a = len(data) // 4
    data[a:a + int(0.3 * len(data))] = bytes(int(0.3 * len(data)))  # the index (at the end) survives
    media.write_bytes(bytes(data))
    res = local_run(root, tmp_path / "out")
    assert res["Whole"].status == "ok"
    assert res["Zeroed"].status == "failed"
    assert "damaged" in res["Zeroed"].error and "Zeroed.mp4" in res["Zeroed"].error
    assert open_store(tmp_path / "out" / "stream.zarr").items() == ["Whole"]


def test_a_clip_whose_streams_start_late_keeps_pts_times_and_passes_the_duration_check(tmp_path):
    root = films(tmp_path / "emos", ["Late"])
    d = root / STREAM_DIR / "Late"
    meta = json.loads((d / "sentence_level_timestamps.json").read_text())
    times = [1.5 + k / 10 for k in range(int(meta["duration"] * 10))]
    write_media(str(d / "Late.mp4"), meta["duration"], fps=10, size=(64, 48), frame_times=times,
                frame_fn=lambda t: solid(64, 48, int(t * 40)), audio_fn=tone(300))
    res = local_run(root, tmp_path / "out", "frame_stats")
    assert res["Late"].status == "ok", res["Late"].error
    t = open_store(tmp_path / "out" / "stream.zarr").item("Late").groups["visual"].t
    assert t[0] == pytest.approx(1.5) and np.allclose(np.diff(t), 0.25, atol=0.051)


def test_a_full_disk_is_blamed_on_the_output_folder_not_the_media(tmp_path, monkeypatch):
    import errno

    from engine.store import writer
    root = films(tmp_path / "emos", ["A"])

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(writer.ShardWriter, "publish", full)
    res = local_run(root, tmp_path / "out", "frame_stats")["A"]
    assert res.status == "failed" and "cannot write the store in" in res.error and str(tmp_path / "out") in res.error
    assert "A.mp4" not in res.error and "No space left" in res.error


# ------------------------------------------------------------------------------------------------ consistency
def _version(k: int) -> ItemRows:
    t = np.arange(20) * 0.25
    rows = np.full((20, 3), float(k), np.float32)
    return ItemRows("film", {"duration_s": 5.0, "groups": ["visual"], "version": k}, {"visual": (rows, t)},
                    {"start": np.array([0.0]), "end": np.array([5.0]), "text": np.array([f"v{k}"], dtype=object)},
                    {"primary": np.array([k % 7], np.int8)})


def test_a_reader_sees_one_whole_version_while_the_item_is_republished(tmp_path):
    store = FeatureStore(tmp_path, "stream")
    store.create()

    def publish(k):
        with store.lock("film-shard"):
            w = store.stage("film-shard")
            w.write([_version(k)], {"visual": {}}, {"visual": 3}, pooled=False, dtype="float32")
            w.publish()
    publish(0)
    stop, errors = threading.Event(), []

    def writer_loop():
        k = 1
        while not stop.is_set() and k < 400:
            publish(k)
            k += 1
    th = threading.Thread(target=writer_loop)
    th.start()
    reads = 0
    try:
        while th.is_alive() and reads < 3000:
            try:
                item = open_store(store.path).item("film")  # whatever it opens, whenever
                k = item.attrs["version"]
                feats = np.asarray(item.groups["visual"].features)
                seg = item.segments["text"][0]
                lab = int(item.labels["primary"][0])
            except Exception as exc:  # a reader must never fail because a publish is under way
                errors.append(repr(exc))
                continue
            reads += 1
            if not (np.all(feats == k) and seg == f"v{k}" and lab == k % 7):
                errors.append(f"mixed versions: attrs {k}, rows {feats[0, 0]}, text {seg}, label {lab}")
    finally:
        stop.set()
        th.join()
    assert reads > 50 and errors == [], errors[:5]


# ------------------------------------------------------------------------------------------------ reader args
def test_windows_and_streams_refuse_impossible_arguments(tmp_path):
    root = films(tmp_path / "emos", ["A"])
    local_run(root, tmp_path / "out", "frame_stats")
    r = open_store(tmp_path / "out" / "stream.zarr")
    for t0, t1 in ((1.0, math.nan), (math.nan, 2.0)):
        with pytest.raises(ValueError, match="NaN"):
            r.window("A", t0, t1)
    with pytest.raises(ValueError, match="hop_s"):
        next(r.stream("A", hop_s=0))
    with pytest.raises(ValueError, match="hop_s"):
        next(r.stream("A", hop_s=float("nan")))
    with pytest.raises(ValueError, match="lookback_s"):
        next(r.stream("A", hop_s=1.0, lookback_s=-1))


# ------------------------------------------------------------------------------------------------ metadata
def _meta(root, name):
    return root / STREAM_DIR / name / "sentence_level_timestamps.json"


def test_metadata_problems_are_said_never_dropped(tmp_path):
    root = films(tmp_path / "emos", ["Shuffled", "Reversed", "Nan Duration", "Banner"])
    meta = json.loads(_meta(root, "Shuffled").read_text())
    meta["segments"] = meta["segments"][::-1]
    _meta(root, "Shuffled").write_text(json.dumps(meta))
    emo_path = root / STREAM_DIR / "Reversed" / "Reversed.emotion.json"
    emo = emo_path.read_text().replace('"00:00-00:01"', '"00:02-00:00"')
    assert emo != emo_path.read_text()
    emo_path.write_text(emo)
    meta = json.loads(_meta(root, "Nan Duration").read_text())
    _meta(root, "Nan Duration").write_text(json.dumps(meta).replace(f'"duration": {meta["duration"]}',
                                                                    '"duration": NaN'))
    meta = json.loads(_meta(root, "Banner").read_text())
    raw = "(Transcribed by TurboScribe.ai. Go Unlimited to remove this message.) 你知道人总是这样的。"
    meta["segments"][0]["text"] = raw
    _meta(root, "Banner").write_text(json.dumps(meta, ensure_ascii=False))
    hidden = root / STREAM_DIR / ".Hidden"
    hidden.mkdir()
    items = {it.id: it for it in discover("stream", root)}
    # a hidden folder is reported as a failed item, never dropped from discovery
    assert items[".Hidden"].error is not None and ".Hidden" in items[".Hidden"].error.line()
    shuffled = items["Shuffled"]
    assert [s.start_s for s in shuffled.segments] == sorted(s.start_s for s in shuffled.segments)
    assert any("out of time order" in w for w in shuffled.warnings)
    assert shuffled.labels["primary"].tolist() == [3, 0]  # Joy then Anger, in time order
    assert any("ends before it starts" in w for w in items["Reversed"].warnings)
    assert "duration" in items["Nan Duration"].error.line() and "NaN" not in json.dumps(
        {k: v for k, v in items["Shuffled"].meta.items()}, allow_nan=False)
    banner = items["Banner"]
    assert banner.segments[0].text == "你知道人总是这样的。" and banner.segments[0].raw_text == raw
    assert any("transcription banner" in w for w in banner.warnings)
    # end to end: text rows follow the segments' (time) order and the raw text is kept
    res = local_run(root, tmp_path / "out", "frame_stats,e5_small")
    assert res["Shuffled"].status == res["Banner"].status == "ok"
    store = open_store(tmp_path / "out" / "stream.zarr")
    view = store.item("Shuffled")
    np.testing.assert_array_equal(view.groups["text"].t, view.segments["start"])
    b = store.item("Banner")
    assert b.segments["text"][0] == "你知道人总是这样的。" and b.segments["text_raw"][0] == raw


def test_cached_runs_sweep_leftovers_of_killed_runs(tmp_path, run_extract):
    root = films(tmp_path / "emos", ["A"])
    out = tmp_path / "out"
    args = ("--split", "stream", "--root", root, "--out", out, "--extractors", "frame_stats")
    assert run_extract(*args)[0] == 0
    store = FeatureStore(out, "stream")
    left = [store.staging / "0123456789abcdef0123.deadbeef0000", store.trash / "0123456789abcdef0123.cafe00000000"]
    for p in left:
        (p / "visual").mkdir(parents=True)
    code, printed = run_extract(*args)
    assert code == 0 and "1 cached" in printed
    assert not any(p.exists() for p in left)
    assert os.listdir(store.staging) == [] and os.listdir(store.trash) == []
