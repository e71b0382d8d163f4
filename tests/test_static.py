"""The static split: clips found from generated label tables (xlsx, as in the EmoS release) and small mp4s."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from engine.datasets import discover
from engine.labels import BASIC7, GOEMOTIONS28
from engine.media import solid, tone, write_media
from engine.datasets.emos_static import discover_static

PROBS = [f"goemotion_prob_{name}" for name in GOEMOTIONS28]
# the release's headers, blank (merged) cells included
EN_BASIC7 = ["uid", "Dialogue_ID", "Utterance_ID", "video_path", "Utterance", None, None, "basic_corrected",
             "basic_corrected_conf"]
EN_GOEMO = ["Sr No.", "Dialogue_ID", "Utterance_ID", "Utterance", None, "goemotion_union_size", *PROBS,
            "goemotion_prob_unsure"]
ZH_BASIC7 = ["split", "video_id", "clip_id", "clip_id_file", "uid", "text", None, "ds_label", "ds_confidence", None,
             "confidence_tier"]
ZH_GOEMO = ["video_id", "clip_id", "text", None, "goemotion_union_size", *PROBS, "goemotion_prob_unsure"]
MELD = "datasets/data-final/English/train_splits"
RAW = "datasets/data-final/Chinese/Raw"


def write_xlsx(path: Path, header: list, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def en_b7(d, u, text, label, conf):
    return [f"dia{d}_utt{u}", d, u, f"newdataset-MELD/train_splits/dia{d}_utt{u}.mp4", text, None, None, label, conf]


def zh_b7(video, clip, clip_file, text, label, conf, tier):
    return ["front2500", video, clip, clip_file, f"{video}_{clip}", text, None, label, conf, None, tier]


def goemo(votes: dict[str, float], unsure: float = 0.0) -> list[float]:
    return [votes.get(name, 0) for name in GOEMOTIONS28] + [unsure]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> Path:
    """One small real mp4 (H.264 + AAC), copied wherever a test needs a clip."""
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_media(str(path), 1.2, fps=10, size=(64, 48), frame_fn=lambda t: solid(64, 48, int(40 + 100 * t)),
                audio_fn=tone(330.0), audio_rate=16000)
    return path


def put_clip(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


def make_checkout(root: Path, clip_file: Path, labels_base: str = "datasets/data-final", meta: bool = True,
                  media: bool = True) -> Path:
    """A small static checkout: 3 MELD clips, 4 CH-SIMS v2 clips, in the release's table formats."""
    en, zh = root / labels_base / "English", root / labels_base / "Chinese"
    write_xlsx(en / "basic7" / "3000_basic7_high_confidence_ge0.5.xlsx", EN_BASIC7, [
        en_b7(0, 0, "also I was the point person", "Neutral", 1),
        en_b7(0, 2, "That I did. That I did.", "Joy", 0.875)])
    write_xlsx(en / "basic7" / "3000_basic7_low_confidence_lt0.5.xlsx", EN_BASIC7, [
        en_b7(2, 6, "Just coffee! Where are we gonna hang out now?", "Anger", 0.333333333333333)])
    write_xlsx(en / "goemotion" / "goemotion_soft_labels_first3000.xlsx", EN_GOEMO, [
        [1, 0, 0, "also I was the point person", None, 1, *goemo({"neutral": 1})],
        [3, 0, 2, "That I did. That I did.", None, 3, *goemo({"approval": 1 / 3, "joy": 2 / 3, "pride": 2 / 3})],
        [9, 2, 6, "Just coffee! Where are we gonna hang out now?", None, 2,
         *goemo({"annoyance": 1, "sadness": 1 / 3}, unsure=1 / 3)]])
    # CH-SIMS: Basic-7 ids are strings (zeros dropped in one column or the other), GoEmotions ids are numbers;
    # "00008_0" was stored as 80 ("00008_0" read as a number)
    write_xlsx(zh / "basic7" / "basic7_ds_high_confidence.xlsx", ZH_BASIC7, [
        zh_b7("video_0001", "0001", "0001", "我不想嫁给李茶", "Disgust", 0.995, "high"),
        zh_b7("aqgy4_0005", "80", "00080", "哈哈，我就猜到了。", "Joy", 0.97, "high")])
    write_xlsx(zh / "basic7" / "basic7_ds_low_confidence.xlsx", ZH_BASIC7, [
        zh_b7("video_0001", "0003", "0003", "我不想嫁入什么豪门", "Anger", 0.69, "low")])
    go_rows = [["video_0001", 1, "我不想嫁给李茶", None, 3, *goemo({"anger": 1 / 3, "disapproval": 1, "disgust": 1})],
               ["video_0001", 2, "你这是嫁入豪门啊！", None, 4, *goemo({"caring": 1 / 3, "joy": 2 / 3})],
               ["video_0001", 3, "我不想嫁入什么豪门", None, 3, *goemo({"anger": 2 / 3, "disapproval": 1})],
               ["aqgy4_0005", 80, "哈哈，我就猜到了。", None, 2, *goemo({"amusement": 1, "joy": 1 / 3})]]
    write_xlsx(zh / "goemotion" / "front2500_training_data.xlsx", ZH_GOEMO, go_rows)
    # the release also ships the two halves merged: identical rows, read and ignored
    write_xlsx(zh / "goemotion" / "training_data_merged.xlsx", [*ZH_GOEMO, "source_split"],
               [[*r, "front2500_training_data.xlsx"] for r in go_rows])
    if meta:
        (root / labels_base).mkdir(parents=True, exist_ok=True)
        (root / labels_base / "ch-simsv2s-meta.csv").write_text(
            "video_id,clip_id,text,label,mode\n"
            "video_0001,0001,我不想嫁给李茶,-1.0,train\n"
            "video_0001,0002,你这是嫁入豪门啊！,1.0,train\n"
            "video_0001,0003,我不想嫁入什么豪门,-1.0,test\n"
            "aqgy4_0005,00008_0,哈哈，我就猜到了。,1.0,train\n", encoding="utf-8")
    if media:
        for d, u in ((0, 0), (0, 2), (2, 6)):
            put_clip(clip_file, root / MELD / f"dia{d}_utt{u}.mp4")
        for rel in ("video_0001/0001.mp4", "video_0001/0002.mp4", "video_0001/0003.mp4", "aqgy4_0005/00008_0.mp4"):
            put_clip(clip_file, root / RAW / rel)
    return root


def by_id(items):
    return {it.id: it for it in items}


# ------------------------------------------------------------------------------------------------ discovery
def test_finds_meld_and_chsims_clips_with_media_and_text(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    items = discover("static", root, {"static": {}})
    assert [it.id for it in items] == ["dia0_utt0", "dia0_utt2", "dia2_utt6", "aqgy4_0005_00008_0",
                                       "video_0001_0001", "video_0001_0002", "video_0001_0003"]
    for it in items:
        assert it.error is None, it.error.line()
        assert it.split == "static" and it.duration_s is None
        assert Path(it.media).is_file() and Path(it.media).is_absolute()
        assert (root / it.source).resolve() == Path(it.media)
        assert len(it.segments) == 1
        assert it.segments[0].start_s == 0.0 and it.segments[0].end_s == math.inf  # the whole clip
    got = by_id(items)
    assert got["dia0_utt2"].lang == "en" and got["dia0_utt2"].source == f"{MELD}/dia0_utt2.mp4"
    assert got["dia0_utt2"].segments[0].text == "That I did. That I did."
    assert got["aqgy4_0005_00008_0"].lang == "zh"
    assert got["aqgy4_0005_00008_0"].source == f"{RAW}/aqgy4_0005/00008_0.mp4"
    assert got["video_0001_0002"].segments[0].text == "你这是嫁入豪门啊！"
    assert got["video_0001_0001"].meta == {"corpus": "CH-SIMS v2", "video_id": "video_0001", "clip_id": "0001"}


def test_label_values_and_shapes(tmp_path, clip_file):
    got = by_id(discover_static(make_checkout(tmp_path, clip_file), {}))
    en = got["dia2_utt6"].labels
    assert en["primary"].dtype == np.int8 and en["primary"].tolist() == [BASIC7.index("Anger")]
    assert en["primary_confidence"].dtype == np.float32
    assert en["primary_confidence"][0] == pytest.approx(1 / 3, abs=1e-6)
    assert en["primary_raw"].tolist() == ["Anger"]
    assert en["goemotions"].shape == (1, 28) and en["goemotions"].dtype == np.float32
    assert en["goemotions_unsure"][0] == pytest.approx(1 / 3, abs=1e-6)
    assert "confidence_tier" not in en
    zh = got["video_0001_0003"].labels
    assert zh["primary"].tolist() == [BASIC7.index("Anger")] and zh["confidence_tier"].tolist() == ["low"]
    assert got["aqgy4_0005_00008_0"].labels["primary"].tolist() == [BASIC7.index("Joy")]  # 80 -> 00008_0
    attrs = got["dia0_utt0"].label_attrs
    assert attrs["primary"]["names"] == list(BASIC7) and attrs["goemotions"]["names"] == list(GOEMOTIONS28)
    for it in got.values():  # every label is an array over the one segment
        assert all(len(a) == 1 for a in it.labels.values())


def test_goemotions_follow_the_vocabulary_order_whatever_the_column_order(tmp_path, clip_file):
    base = make_checkout(tmp_path, clip_file)
    values = {name: round((k + 1) / 100, 2) for k, name in enumerate(GOEMOTIONS28)}
    shuffled = list(reversed(PROBS))  # columns in another order than GOEMOTIONS28
    path = base / "datasets/data-final/English/goemotion/goemotion_soft_labels_first3000.xlsx"
    write_xlsx(path, ["Dialogue_ID", "Utterance_ID", "Utterance", *shuffled],
               [[0, 0, "also I was the point person", *[values[c[len("goemotion_prob_"):]] for c in shuffled]]])
    it = by_id(discover_static(base, {}))["dia0_utt0"]
    assert it.labels["goemotions"][0].tolist() == pytest.approx([values[n] for n in GOEMOTIONS28])
    assert math.isnan(it.labels["goemotions_unsure"][0])  # no unsure column: unknown
    # clips that lost their GoEmotions row: unknown (NaN), a warning, not a failure
    other = by_id(discover_static(base, {}))["dia0_utt2"]
    assert other.error is None and np.isnan(other.labels["goemotions"]).all()
    assert any("no GoEmotions row" in w for w in other.warnings)


def test_soft_vector_keeps_vote_fractions(tmp_path, clip_file):
    it = by_id(discover_static(make_checkout(tmp_path, clip_file), {}))["dia0_utt2"]
    g = dict(zip(GOEMOTIONS28, it.labels["goemotions"][0].tolist()))
    assert g["joy"] == pytest.approx(2 / 3) and g["pride"] == pytest.approx(2 / 3)
    assert g["approval"] == pytest.approx(1 / 3) and g["neutral"] == 0.0
    assert sum(g.values()) == pytest.approx(5 / 3)  # not renormalised: several emotions can have every vote


def test_missing_clip_fails_that_item_and_names_the_file(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    (root / MELD / "dia0_utt2.mp4").unlink()
    (root / RAW / "video_0001/0003.mp4").unlink()
    got = by_id(discover_static(root, {}))
    assert len(got) == 7
    bad = got["dia0_utt2"]
    assert bad.error is not None and bad.media is None
    assert bad.error.file == str(root / MELD / "dia0_utt2.mp4")
    assert "clip not found" in bad.error.line() and "dia0_utt2.mp4" in bad.error.line()
    assert bad.labels["primary"].tolist() == [BASIC7.index("Joy")]  # labels are still read
    assert got["video_0001_0003"].error.file == str(root / RAW / "video_0001/0003.mp4")
    assert [i for i, it in got.items() if it.error is None] == [
        "dia0_utt0", "dia2_utt6", "aqgy4_0005_00008_0", "video_0001_0001", "video_0001_0002"]


def test_custom_path_templates(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file, media=False)
    for rel in ("clips/zh/video_0001-0001.mp4", "clips/zh/video_0001-0002.mp4", "clips/zh/video_0001-0003.mp4",
                "clips/zh/aqgy4_0005-00008_0.mp4", "clips/en/0_0.mp4", "clips/en/0_2.mp4", "clips/en/2_6.mp4"):
        put_clip(clip_file, root / rel)
    cfg = {"chsims_path": "clips/zh/{video_id}-{clip_id}.mp4", "meld_path": "clips/en/{dialogue}_{utterance}.mp4"}
    got = by_id(discover("static", root, {"static": cfg}))
    assert all(it.error is None for it in got.values()), [it.error.line() for it in got.values() if it.error]
    assert got["aqgy4_0005_00008_0"].source == "clips/zh/aqgy4_0005-00008_0.mp4"
    assert got["dia2_utt6"].media == str((root / "clips/en/2_6.mp4").resolve())
    with pytest.raises(ValueError, match="chsims_path.*clip"):
        discover_static(root, {"chsims_path": "clips/{video}/{clip}.mp4"})


def test_unmapped_or_missing_labels_are_warnings(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    write_xlsx(root / "datasets/data-final/English/basic7/3000_basic7_high_confidence_ge0.5.xlsx", EN_BASIC7, [
        en_b7(0, 0, "also I was the point person", "Contempt", 0.8),
        en_b7(0, 2, "That I did. That I did.", "Joy", "n/a")])
    got = by_id(discover_static(root, {}))
    it = got["dia0_utt0"]
    assert it.error is None and it.labels["primary"].tolist() == [-1]
    assert it.labels["primary_raw"].tolist() == ["Contempt"]
    assert any("'Contempt' is not a Basic-7 label" in w for w in it.warnings)
    odd = got["dia0_utt2"]
    assert odd.error is None and math.isnan(odd.labels["primary_confidence"][0])
    assert any("'n/a' is not a number" in w for w in odd.warnings)
    # CH-SIMS clip 0002 has GoEmotions only: primary unknown, warned
    only_go = got["video_0001_0002"]
    assert only_go.error is None and only_go.labels["primary"].tolist() == [-1]
    assert only_go.labels["confidence_tier"].tolist() == [""]
    assert any("no Basic-7 row" in w for w in only_go.warnings)


def test_high_confidence_file_wins_a_duplicate_row(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    # the low file (read last) also labels dia0_utt2, differently; and the high file is named so it sorts after
    low = root / "datasets/data-final/English/basic7/3000_basic7_low_confidence_lt0.5.xlsx"
    write_xlsx(low, EN_BASIC7, [en_b7(2, 6, "Just coffee! Where are we gonna hang out now?", "Anger", 0.3),
                                en_b7(0, 2, "That I did. That I did.", "Sadness", 0.4)])
    high = root / "datasets/data-final/English/basic7/3000_basic7_high_confidence_ge0.5.xlsx"
    high.rename(high.with_name("z_high_confidence.xlsx"))
    it = by_id(discover_static(root, {}))["dia0_utt2"]
    assert it.labels["primary"].tolist() == [BASIC7.index("Joy")]
    assert it.labels["primary_confidence"][0] == pytest.approx(0.875)
    assert any("'Sadness'" in w and "kept 'Joy'" in w and "z_high_confidence.xlsx" in w for w in it.warnings)
    # identical repeats (the CH-SIMS merged GoEmotions file) are silent
    assert not any("GoEmotions" in w for w in by_id(discover_static(root, {}))["video_0001_0001"].warnings)


# ------------------------------------------------------------------------------------------------ CH-SIMS ids
def test_chsims_ids_from_the_meta_table_tell_clips_that_share_a_number_apart(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    # "00001_0" and "00010" both became 10 in the tables: the text tells which row is which clip
    zh = root / "datasets/data-final/Chinese"
    write_xlsx(zh / "goemotion" / "after2500_training_data.xlsx", ZH_GOEMO, [
        ["aqgy4_0009", 10, "天使与你同在。", None, 1, *goemo({"caring": 1})],
        ["aqgy4_0009", 10, "我是维护女性心理健康的使者。", None, 1, *goemo({"pride": 1})]])
    with open(root / "datasets/data-final/ch-simsv2s-meta.csv", "a", encoding="utf-8") as fh:
        fh.write("aqgy4_0009,00001_0,我是维护女性心理健康的使者。,0.0,train\naqgy4_0009,00010,天使与你同在。,1.0,train\n")
    got = by_id(discover_static(root, {}))
    a, b = got["aqgy4_0009_00001_0"], got["aqgy4_0009_00010"]
    assert a.segments[0].text == "我是维护女性心理健康的使者。" and b.segments[0].text == "天使与你同在。"
    assert a.labels["goemotions"][0, GOEMOTIONS28.index("pride")] == 1.0
    assert b.labels["goemotions"][0, GOEMOTIONS28.index("caring")] == 1.0
    assert a.error.file.endswith("aqgy4_0009/00001_0.mp4")  # no media was written for these two


def test_chsims_ids_without_the_meta_table_come_from_the_files(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file, meta=False, media=False)
    put_clip(clip_file, root / RAW / "video_0001/0001.mp4")
    put_clip(clip_file, root / RAW / "video_0001/00002.mp4")  # a 5-digit id the GoEmotions table stores as 2
    got = by_id(discover_static(root, {}))
    assert got["video_0001_0001"].error is None
    assert got["video_0001_00002"].error is None and got["video_0001_00002"].segments[0].text == "你这是嫁入豪门啊！"
    # no file: the id as the Basic-7 table spells it (longest first), failed as not found
    assert "clip not found" in got["aqgy4_0005_00080"].error.line()
    assert got["aqgy4_0005_00080"].labels["primary"].tolist() == [BASIC7.index("Joy")]


# ------------------------------------------------------------------------------------------------ layouts, errors
def test_labels_folder_at_the_root_is_accepted(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file, labels_base="labels")
    items = discover_static(root, {})
    assert len(items) == 7 and all(it.error is None for it in items)
    assert by_id(items)["aqgy4_0005_00008_0"].media  # meta table found beside labels/English


def test_malformed_tables_raise_naming_the_file(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    table = root / "datasets/data-final/Chinese/basic7/basic7_ds_low_confidence.xlsx"
    write_xlsx(table, ["video_id", "clip_id", "text", "label"], [["video_0001", "0003", "x", "Anger"]])
    with pytest.raises(ValueError, match=r"basic7_ds_low_confidence\.xlsx: no column 'ds_label', 'ds_confidence'"):
        discover_static(root, {})
    table.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"basic7_ds_low_confidence\.xlsx: not a readable xlsx"):
        discover_static(root, {})
    # an Excel lock file beside the tables is not a table
    table.unlink()
    (table.parent / "~$basic7_ds_high_confidence.xlsx").write_bytes(b"lock")
    assert len(discover_static(root, {})) == 7


def test_a_row_without_usable_ids_fails_alone(tmp_path, clip_file):
    root = make_checkout(tmp_path, clip_file)
    write_xlsx(root / "datasets/data-final/English/basic7/3000_basic7_low_confidence_lt0.5.xlsx", EN_BASIC7, [
        en_b7(2, 6, "Just coffee!", "Anger", 0.3), [None, "twelve", 3, None, "?", None, None, "Joy", 0.4],
        [None] * 9])  # a blank row is no row
    items = discover_static(root, {})
    bad = [it for it in items if it.id == "3000_basic7_low_confidence_lt0.5@row3"]
    assert len(bad) == 1 and "unusable clip id" in bad[0].error.line()
    assert bad[0].error.file.endswith("3000_basic7_low_confidence_lt0.5.xlsx")
    assert sum(it.error is None for it in items) == 7


def test_no_label_tables_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no static label tables"):
        discover_static(tmp_path, {})


# ------------------------------------------------------------------------------------------------ end to end
def test_static_items_extract_to_pooled_vectors(tmp_path, clip_file):
    """Discovery -> worker -> store for two clips (no Ray): features, pooled vectors, segments and labels."""
    import extractors as registry
    from engine.records import Group
    from engine.reader import open_store
    from engine.store import FeatureStore
    from engine.pipeline.worker import ShardProcessor, process_items
    from engine.records import RunPlan

    root = make_checkout(tmp_path / "emos", clip_file)
    items = [it for it in discover_static(root, {}) if it.id in ("dia0_utt2", "video_0001_0001")]
    groups = [Group("visual", registry.get_spec("frame_stats"), {"dtype": "float32", "short_side": 64}),
              Group("audio", registry.get_spec("logmel"), {"dtype": "float32"})]
    out = tmp_path / "out"
    FeatureStore(out, "static").create()
    proc = ShardProcessor(RunPlan(out=str(out), split="static", groups=groups, pooled=True,
                                  decode={"backend": "pyav", "short_side": 64}))
    results = process_items(proc, items)
    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    store = open_store(out / "static.zarr")
    assert store.items() == ["dia0_utt2", "video_0001_0001"]
    view = store.item("video_0001_0001")
    assert view.duration_s == pytest.approx(1.2, abs=0.1)
    for name, dim in (("visual", 4), ("audio", 64)):
        pooled = np.asarray(__import__("zarr").open_group(str(view.shard.path))[f"{name}/pooled"])
        assert pooled.shape == (2, dim)  # one mean vector per clip of the shard
        pooled = view.pooled(name)
        assert pooled == pytest.approx(np.asarray(view.groups[name].features).mean(axis=0), rel=1e-5)
    assert view.segments["text"].tolist() == ["我不想嫁给李茶"]
    assert view.segments["end"].tolist() == [pytest.approx(view.duration_s)]
    assert view.labels["primary"].tolist() == [BASIC7.index("Disgust")]
    assert view.labels["confidence_tier"].tolist() == ["high"]
    assert view.labels["goemotions"].shape == (1, 28)
    assert view.segment_at(0.2, 0.6) == 0  # the one segment covers the clip
    # a second run over the same items is all cache hits
    assert [r.status for r in process_items(proc, items)] == ["cached", "cached"]
    # a changed audio extractor recomputes audio only; the reused visual group keeps its pooled vector
    groups[1] = Group("audio", registry.get_spec("fbank"), {"dtype": "float32"})
    proc = ShardProcessor(RunPlan(out=str(out), split="static", groups=groups, pooled=True,
                                  decode={"backend": "pyav", "short_side": 64}))
    again = process_items(proc, items)
    assert [(r.status, r.computed, r.reused) for r in again] == [("ok", ["audio"], ["visual"])] * 2, again
    view = open_store(out / "static.zarr").item("video_0001_0001")
    z = __import__("zarr").open_group(str(view.shard.path))
    assert z["audio/pooled"].shape == (2, 80) and z["visual/pooled"].shape == (2, 4)
    assert view.pooled("visual") == pytest.approx(np.asarray(view.groups["visual"].features).mean(axis=0), rel=1e-5)
