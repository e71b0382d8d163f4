"""End to end: CLI -> real Ray actors -> real encoders -> Zarr store, and the cache on re-runs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr

from engine.labels import BASIC7
from engine.reader import open_store

from .conftest import FAST


def _shard(store_dir, item):
    """The folder of the shard version that holds ``item``."""
    return open_store(store_dir).item(item).shard.path


class ZarrItem:
    """One item's arrays read with plain zarr, through the item ids and row offsets (as a user would)."""

    def __init__(self, root, item_id):
        for key in root.group_keys():
            ids = list(root[f"{key}/items/id"][:])
            if item_id in ids:
                self.g, self.k = root[key], ids.index(item_id)
                self.attrs = dict(self.g.attrs)["items"][item_id]
                return
        raise KeyError(item_id)

    def rows(self, path):
        group = path.rsplit("/", 1)[0]  # every table of a shard has the row offsets of its items
        off = self.g[f"{group}/offsets"][:]
        return self.g[path][off[self.k]:off[self.k + 1]]


def test_end_to_end_writes_the_store_contract(corpus, tmp_path, run_extract):
    out = tmp_path / "out"
    code, printed = run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)
    assert code == 0
    assert "2 item(s): 2 written" in printed and str(out / "stream.zarr") in printed

    root = zarr.open_group(str(out / "stream.zarr"), mode="r")
    assert len(list(root.group_keys())) == 2  # films are one-item shards
    item = ZarrItem(root, "Beta Film")
    a = item.attrs
    assert dict(item.g.attrs)["complete"] is True and a["lang"] == "zh"
    assert a["source"] == "datasets/streaming-finalsplit/Beta Film/Beta Film.mp4"
    for group, dim in (("visual", 4), ("audio", 64), ("text", 384)):
        f, t = item.rows(f"{group}/features"), item.rows(f"{group}/t")
        assert f.shape[1] == dim and f.shape[0] == t.shape[0] > 0
        assert t.dtype == np.float64 and np.all(np.diff(t) >= 0)
        assert item.g[group].attrs["extractor"] in FAST.split(",")
        assert item.g[f"{group}/features"].metadata.dimension_names == ("time", "feature")
    # visual rows sit on the 4 fps grid of a 12 fps film: 0, 0.25, 0.5 ...
    np.testing.assert_allclose(item.rows("visual/t")[:4], [0, 0.25, 0.5, 0.75], atol=1e-6)
    # text rows are the segment starts; segments stored exactly as the JSON gives them
    meta = json.loads((corpus / "datasets/streaming-finalsplit/Beta Film/sentence_level_timestamps.json").read_text())
    assert a["duration_s"] == pytest.approx(meta["duration"], abs=0.1)
    np.testing.assert_array_equal(item.rows("segments/start"), [s["start"] for s in meta["segments"]])
    np.testing.assert_array_equal(item.rows("segments/end"), [s["end"] for s in meta["segments"]])
    np.testing.assert_array_equal(item.rows("text/t"), [s["start"] for s in meta["segments"]])
    assert list(item.rows("segments/text")) == [s["text"] for s in meta["segments"]]
    # labels: Neutral, Sadness, Surprise in Basic-7 order; one turning point per change
    assert item.rows("labels/primary").tolist() == [BASIC7.index(e) for e in ("Neutral", "Sadness", "Surprise")]
    assert item.rows("turning_points/segment").tolist() == [1, 2]
    assert list(item.g["labels/goemotions"].attrs["names"])[:3] == ["admiration", "amusement", "anger"]
    # the reader gives the same
    view = open_store(out / "stream.zarr").item("Beta Film")
    assert view.labels["turning_points"].tolist() == [1, 2]
    np.testing.assert_array_equal(view.groups["visual"].t, item.rows("visual/t"))

    report = json.loads((out / "stream.report.json").read_text())
    assert report["counts"] == {"ok": 2}

    from engine.inspect import inspect_store, main as inspect_main
    summary = inspect_store(out / "stream.zarr", verify=True)
    assert len(summary["items"]) == 2 and summary["problems"] == [] and summary["bytes"] > 0
    assert summary["groups"]["visual"]["rate_hz"] == 4.0 and summary["groups"]["text"]["dim"] == 384
    assert inspect_main([str(out / "stream.zarr")]) == 0


def test_second_run_rewrites_nothing_and_force_does(corpus, tmp_path, run_extract):
    out = tmp_path / "out"
    assert run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)[0] == 0
    shard = _shard(out / "stream.zarr", "Alpha Film")
    chunk = shard / "visual" / "features" / "c" / "0" / "0"
    before = (chunk.stat().st_ino, chunk.stat().st_mtime_ns)
    code, printed = run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)
    assert code == 0 and "0 written, 2 cached" in printed
    assert (chunk.stat().st_ino, chunk.stat().st_mtime_ns) == before
    code, printed = run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST, "--force")
    assert code == 0 and "2 written" in printed
    assert not shard.exists() and _shard(out / "stream.zarr", "Alpha Film") != shard  # a new version replaced it


def test_changing_one_extractor_recomputes_only_its_group(corpus, tmp_path, run_extract):
    out = tmp_path / "out"
    assert run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)[0] == 0
    store = out / "stream.zarr"
    audio_before = np.array(open_store(store).item("Alpha Film").groups["audio"].features)
    visual_before = np.array(open_store(store).item("Alpha Film").groups["visual"].features)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("extractors:\n  frame_stats:\n    params: {size: 32}\n")
    code, printed = run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST,
                                "--config", cfg)
    assert code == 0 and "2 written" in printed
    report = json.loads((out / "stream.report.json").read_text())
    for r in report["items"]:
        assert r["computed"] == ["visual"] and sorted(r["reused"]) == ["audio", "text"]
    # the audio rows are carried over exactly, visual is new
    item = open_store(store).item("Alpha Film")
    np.testing.assert_array_equal(np.asarray(item.groups["audio"].features), audio_before)
    assert item.groups["visual"].attrs["params"] == {"size": 32}
    assert not np.array_equal(np.asarray(item.groups["visual"].features), visual_before)


def test_changed_labels_rewrite_labels_but_reuse_features(corpus, tmp_path, run_extract):
    out = tmp_path / "out"
    assert run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)[0] == 0
    emo = corpus / "datasets/streaming-finalsplit/Alpha Film/Alpha Film.emotion.json"
    emo.write_text(emo.read_text().replace('"Sadness', '"Fear'), encoding="utf-8")
    code, _ = run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)
    assert code == 0
    report = {r["id"]: r for r in json.loads((out / "stream.report.json").read_text())["items"]}
    assert report["Alpha Film"]["status"] == "ok" and report["Alpha Film"]["computed"] == []
    assert report["Beta Film"]["status"] == "cached"
    assert open_store(out / "stream.zarr").item("Alpha Film").labels["primary"][0] == BASIC7.index("Fear")


def test_list_extractors_and_dry_run(corpus, capsys):
    from engine.extract import main
    assert main(["--list-extractors"]) == 0
    listed = capsys.readouterr().out
    for name in ("frame_stats", "efficientnet_lite0", "logmel", "egemaps", "e5_small"):
        assert name in listed
    assert main(["--split", "stream", "--root", str(corpus), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "Alpha Film" in printed and "2 stream item(s), 0 with problems" in printed


def test_item_names_never_escape_the_output_folder(tmp_path):
    from engine.pipeline.plan import new_shard_key
    from engine.records import check_item_id
    from engine.store import FeatureStore
    for bad in ("..", "../x", "a/b", ".hidden", "", "x\x00y", "__meta"):
        assert check_item_id(bad) is not None
    assert check_item_id("Good Morning, Vietnam") is None and check_item_id("The Devil's Advocate") is None
    # item names are data inside a shard, never paths: shard folders are named by digests
    key = new_shard_key(["../../etc", "a/b"])
    assert key.isalnum()
    store = FeatureStore(tmp_path, "stream")
    assert store.stage(key).path.parent == store.staging
    assert not os.path.exists(tmp_path.parent / "etc")


def test_planning_hands_each_shard_over_as_soon_as_its_items_are_hashed(tmp_path, run_extract):
    """A first run reads every media file once to hash it: the actors start on the first shard, not after the
    last file. Shards already in the store come first; the tasks handed over are the ones returned. Within each,
    the smallest shard goes first (the first result comes soonest), then the largest first (no long film is left
    to run alone at the end); shards are still packed in the order of their items' ids."""
    from engine.config import load_config
    from engine.datasets import discover
    from engine.extract import make_groups
    from engine.pipeline.plan import plan_shards
    from engine.store import FeatureStore

    from .conftest import make_corpus
    seconds = (3.0, 2.0, 1.0, 1.0, 6.0, 5.0)  # shards of 2: 5 s, 2 s, 11 s of film
    films = {f"Film {k}": ("en", f"Film {k}", [("A line.", "Joy", s)]) for k, s in enumerate(seconds)}
    root = make_corpus(tmp_path / "emos", films)
    groups = make_groups(load_config(), FAST)
    items = discover("stream", root)
    handed = []

    def ready(task):  # which items are hashed when each task is handed over
        handed.append(([it.id for it in task.items], sorted(it.id for it in items if it.media_fp)))
    tasks, done = plan_shards(items, groups, {}, 2, False, ready=ready)
    assert done == [] and [ids for ids, _ in handed] == [[it.id for it in t.items] for t in tasks]
    assert handed == [(["Film 2", "Film 3"], ["Film 2", "Film 3"]),
                      (["Film 4", "Film 5"], ["Film 2", "Film 3", "Film 4", "Film 5"]),
                      (["Film 0", "Film 1"], [f"Film {k}" for k in range(6)])]
    # "Film 0" and "Film 4" are in the store, each in its own shard, their files touched (hashed again): their
    # shards go first, the smaller first; then the new ones (the smallest, "Film 2" or "Film 3", both of 1 s, then
    # the largest first: "Film 5", "Film 1", the other)
    out = tmp_path / "out"
    assert run_extract("--split", "stream", "--root", root, "--out", out, "--extractors", FAST)[0] == 0
    for k in (0, 4):
        media = root / f"datasets/streaming-finalsplit/Film {k}/Film {k}.mp4"
        os.utime(media, ns=(media.stat().st_atime_ns, media.stat().st_mtime_ns + 10**9))
    index = FeatureStore(out, "stream").index()
    index = {k: v for k, v in index.items() if k in ("Film 0", "Film 4")}
    handed.clear()
    items = discover("stream", root)
    tasks, _ = plan_shards(items, groups, index, 1, False, ready=ready)
    assert [ids for ids, _ in handed] == [["Film 0"], ["Film 4"], ["Film 2"], ["Film 5"], ["Film 1"], ["Film 3"]] \
        or [ids for ids, _ in handed] == [["Film 0"], ["Film 4"], ["Film 3"], ["Film 5"], ["Film 1"], ["Film 2"]]
    assert tasks[0].key == index["Film 0"][0] and handed[0][1] == ["Film 0", "Film 4"]


class _Actors:
    """Actors of a run (``run_tasks``'s pool) whose ``process`` waits the seconds the task's key names, then
    answers with its pid: real Ray actors, no models, so that only the order of dispatch is under test."""

    def __init__(self, n: int):
        import ray

        @ray.remote(num_cpus=0)
        class Waiter:
            def process(self, task, progress=None):
                import time

                from engine.records import ItemResult
                if task.key.startswith("die/"):
                    os._exit(1)
                time.sleep(float(task.key.split("/")[1]))
                return [ItemResult(id=it.id, status="ok", worker_pid=os.getpid()) for it in task.items]

        self._new = Waiter.remote
        self.n, self.actors, self.replaced = n, [Waiter.remote() for _ in range(n)], []

    def replace(self, a):
        self.replaced.append(a)
        self.actors[a] = self._new()

    def close(self):
        import ray
        for actor in self.actors:
            ray.kill(actor)


def test_each_task_goes_to_the_first_actor_free_never_behind_a_long_one(ray_address):
    """Two actors, a long task then two short ones: the first two go one to each actor (not both to the first,
    which left the other idle: 2,000 clips in two shards ran on one of two actors), and the third goes to the actor
    that freed first instead of waiting behind the long one. With ``in_flight_per_worker: 2`` each actor still
    gets one task before any gets a second."""
    from engine.pipeline.plan import ShardTask
    from engine.pipeline.runner import run_tasks
    from engine.records import Item, RunPlan

    def task(name, seconds):
        return ShardTask(f"{name}/{seconds}", [Item(name, "stream", "en", None, name, 1.0)])

    def pids(tasks, in_flight=None):
        kw = {} if in_flight is None else {"in_flight_per_worker": in_flight}
        results = run_tasks(tasks, RunPlan(out="", split="stream", groups=[], decode={}), workers=2, max_restarts=0,
                            max_task_retries=0, pool=_Actors(2), **kw)
        return {r.id: r.worker_pid for r in results}
    got = pids([task("long", 4.0), task("short1", 0.1), task("short2", 0.1)])
    assert got["short1"] != got["long"] and got["short2"] == got["short1"], got
    got = pids([task("long", 0.5), task("short1", 0.1)], in_flight=2)
    assert got["short1"] != got["long"], got


def test_an_actor_that_dies_holding_two_tasks_is_replaced_once(ray_address):
    """With ``in_flight_per_worker: 2`` a dead actor's two tasks both fail; the actor is replaced once (a second
    replacement replaced the new, healthy actor and left it running, unknown to the pool), and the next task runs
    on the replacement."""
    from engine.pipeline.plan import ShardTask
    from engine.pipeline.runner import run_tasks
    from engine.records import Item, RunPlan

    def task(key):
        return ShardTask(key, [Item(key, "stream", "en", None, key, 1.0)])
    pool = _Actors(1)
    results = run_tasks([task("die/0"), task("held/0.1"), task("after/0.1")],
                        RunPlan(out="", split="stream", groups=[], decode={}), workers=1, max_restarts=0,
                        max_task_retries=0, pool=pool, in_flight_per_worker=2)
    status = {r.id: r.status for r in results}
    assert status == {"die/0": "failed", "held/0.1": "failed", "after/0.1": "ok"}, results
    assert pool.replaced == [0]


def test_a_touched_but_unchanged_file_is_republished_once_then_recognised(corpus, tmp_path, run_extract,
                                                                          monkeypatch):
    out = tmp_path / "out"
    assert run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)[0] == 0
    media = corpus / "datasets/streaming-finalsplit/Alpha Film/Alpha Film.mp4"
    os.utime(media, ns=(media.stat().st_atime_ns, media.stat().st_mtime_ns + 10**9))
    assert run_extract("--split", "stream", "--root", corpus, "--out", out, "--extractors", FAST)[0] == 0
    report = {r["id"]: r for r in json.loads((out / "stream.report.json").read_text())["items"]}
    assert report["Alpha Film"]["status"] == "ok" and report["Alpha Film"]["computed"] == []
    assert open_store(out / "stream.zarr").item("Alpha Film").attrs["media"]["mtime_ns"] == media.stat().st_mtime_ns
    # from now on the item is recognised by size and mtime: planning reads no media file
    import engine.fingerprint as fp
    from engine.pipeline.plan import plan_item
    from engine.config import load_config
    from engine.datasets import discover
    from engine.extract import make_groups
    from engine.store import FeatureStore

    def no_reading(*a, **k):
        raise AssertionError(f"media read: {a}")
    monkeypatch.setattr(fp, "open", no_reading, raising=False)
    store = FeatureStore(out, "stream")
    for it in discover("stream", corpus):
        assert not plan_item(it, make_groups(load_config(), FAST), store.index()[it.id][1], False).rewrite
