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
from engine.datasets.emos_static import discover_static, summarize

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
    # what the run report says: per language, found and labelled, and why the others are not
    summary = summarize(list(got.values()))
    assert summary["en"] == {"corpus": "MELD", "clips": 3, "found": 2, "labelled": 3, "failed": 1,
                             "reasons": {"clip not found": 1}}
    assert (summary["zh"]["found"], summary["zh"]["labelled"]) == (3, 3)
    assert summary["zh"]["reasons"] == {"clip not found": 1, "no Basic-7 row": 1}  # 0002 has GoEmotions only


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


# ------------------------------------------------------------------------------------------------ the release's form
# CH-SIMS clips as the release names them: file id, the meta table's id, text, Dawid-Skene label and confidence,
# the three annotators' labels, and the tier the paper's rule gives (unanimous or >= 0.9 high, 0.8-0.9 medium)
RELEASE_ZH = [
    ("video_0001", "0001", "0001", "我不想嫁给李茶", "Disgust", 0.995, ("Disgust",) * 3, "high"),
    ("video_0001", "0002", "0002", "你这是嫁入豪门啊！", "Joy", 0.839, ("Joy", "Neutral", "Joy"), "medium"),
    ("video_0001", "0003", "0003", "我不想嫁入什么豪门", "Anger", 0.697, ("Anger", "Anger", "Disgust"), "low"),
    ("aqgy3_0004", "00000", "00000", "就是这样心理素质。", "Joy", 0.88, ("Joy",) * 3, "high"),  # unanimous
    ("aqgy3_0004", "00001", "00001", "干嘛呢你啊。", "Anger", 0.843, ("Disgust", "Anger", "Disgust"), "medium"),
    ("aqgy4_0005", "00008_0", "00008_0", "哈哈，我就猜到了。", "Joy", 0.97, ("Joy", "Joy", "Neutral"), "high"),
    ("aqgy4_0005", "00011_0", "00011_0", "你居然会说话。", "Surprise", 0.6, ("Surprise", "Joy", "Fear"), "low"),
    ("aqgy4_0005", "00011_1", "00011_1", "最近看你不在状态啊。", "Sadness", 0.75, ("Sadness", "Fear", "Neutral"), "low"),
    ("aqgy4_0005", "00020_1", "00020_1", "你没事吧脸色好差。", "Fear", 0.8, ("Fear", "Fear", "Sadness"), "medium"),
    ("aqgy4_0009", "00001_0", "00001_0", "我是维护女性心理健康的使者。", "Neutral", 0.976, ("Joy", "Neutral", "Neutral"),
     "high"),
    ("aqgy4_0009", "00010", "00010", "天使与你同在。", "Joy", 0.9, ("Joy", "Joy", "Neutral"), "high"),
    ("aqgy4_0009", "000260", "00026_0", "虽然我一个字都没听懂。", "Neutral", 0.779, ("Joy", "Neutral", "Surprise"), "low"),
]
ZH_ANALYSIS = {"First-2500/analysis_outputs": ("a1", "a2", "a3"),
               "Last-2500/analysis_outputs_after2500": ("cp", "ljx", "wqf")}
# MELD: (dialogue, utterance, text, label, confidence, the annotators' Basic-7 votes (last 2,000 only), tier)
RELEASE_EN = [(0, 2, "That I did. That I did.", "Joy", 1.0, None, "high"),
              (2, 6, "Just coffee!", "Anger", 0.333333333333333, None, "low"),
              (638, 4, "Dad, we-we can't believe you're selling the house.", "Anger", 0.6032771116692093,
               ("Anger", "Surprise", "Sadness"), "low"),
              (638, 5, "Well, it's time for a new family.", "Neutral", 0.85, ("Neutral",) * 3, "high")]
EN_ANALYSIS = ["Sr No.", "Dialogue_ID", "Utterance_ID", "Utterance", "Speaker", "Emotion", "Sentiment", "uid",
               "video_path", "basic_orig", "go_a10", "go_a10_count", "basic_vote_a10", "go_a11", "go_a11_count",
               "basic_vote_a11", "go_a12", "go_a12_count", "basic_vote_a12", "basic_corrected", "basic_corrected_conf",
               "basic_changed", "basic_correction_reason"]


def release_number(clip_id: str) -> int:
    return int(clip_id.replace("_", ""))


def make_release(root: Path, clip_file: Path, meta: bool = True, analysis: bool = True) -> Path:
    """The static split as the release ships it: clips under ``English/train_splits`` and ``Chinese/Raw`` with
    the release's names, the simplified tables (Basic-7: high and low tiers only), the meta table at
    ``datasets/ch-simsv2s/meta.csv``, and the analysis tables with the annotators' labels."""
    base = root / "datasets/data-final"
    for d, u, *_ in RELEASE_EN:
        put_clip(clip_file, base / "English/train_splits" / f"dia{d}_utt{u}.mp4")
    for video, file_id, *_ in RELEASE_ZH:
        put_clip(clip_file, base / "Chinese/Raw" / video / f"{file_id}.mp4")
    # simplified MELD tables: every clip (the 0.5 split of the file names); the video_path column names a folder
    # the release does not have
    for name, keep in (("3000_basic7_high_confidence_ge0.5", lambda c: c >= 0.5),
                       ("3000_basic7_low_confidence_lt0.5", lambda c: c < 0.5)):
        write_xlsx(base / "English/basic7" / f"{name}.xlsx", EN_BASIC7,
                   [en_b7(d, u, text, label, conf) for d, u, text, label, conf, *_ in RELEASE_EN if keep(conf)])
    write_xlsx(base / "English/goemotion/goemotion_soft_labels_first3000.xlsx", EN_GOEMO,
               [[k, d, u, text, None, 1, *goemo({"neutral": k / 10})] for k, (d, u, text, *_) in enumerate(RELEASE_EN)])
    # simplified CH-SIMS Basic-7: only the high and low tiers; the second half spells ids from the number
    # ("80", "00080" for 00008_0), the first keeps them
    for tier in ("high", "low"):
        write_xlsx(base / f"Chinese/basic7/basic7_ds_{tier}_confidence.xlsx", ZH_BASIC7, [
            zh_b7(video, *((meta_id, meta_id) if k < 3 else (str(release_number(meta_id)),
                                                             f"{release_number(meta_id):05d}")),
                  text, label, conf, tier)
            for k, (video, file_id, meta_id, text, label, conf, _, t) in enumerate(RELEASE_ZH) if t == tier])
    # GoEmotions: ids stored as numbers; clip k votes k/12 for "neutral", so each row is recognisable
    write_xlsx(base / "Chinese/goemotion/training_data_merged.xlsx", ZH_GOEMO, [
        [video, release_number(meta_id), text, None, 1, *goemo({"neutral": k / 12})]
        for k, (video, file_id, meta_id, text, *_) in enumerate(RELEASE_ZH)])
    if meta:
        lines = ["video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"]
        lines += [f"{video},{meta_id},{text},0.0,0.0,0.0,0.0,Neutral,train"
                  for video, _, meta_id, text, *_ in RELEASE_ZH]
        (base / "datasets/ch-simsv2s").mkdir(parents=True, exist_ok=True)
        (base / "datasets/ch-simsv2s/meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if analysis:
        for (half, names), clips in zip(ZH_ANALYSIS.items(), (RELEASE_ZH[:3], RELEASE_ZH[3:])):
            header = ["video_id", "clip_id", "text", *names, "ds_label", "ds_confidence", "unique_labels"]
            # the first half keeps ids as strings with their zeros, the second stores numbers
            write_xlsx(base / "datasets/ch-simsv2s" / half / "basic7/annotated_with_ds.xlsx", header, [
                [video, meta_id if half.startswith("First") else release_number(meta_id), text, *votes, label, conf,
                 len(set(votes))] for video, _, meta_id, text, label, conf, votes, _ in clips])
        write_xlsx(base / "datasets/newdataset-MELD/Annotations-last-2000/analysis_outputs/basic7/"
                          "annotated_with_ds_last2000.xlsx", EN_ANALYSIS, [
            [9, d, u, text, "Ross", "neutral", "neutral", f"dia{d}_utt{u}",
             f"newdataset-MELD/train_splits/dia{d}_utt{u}.mp4", "Neutral", None, 1, votes[0], None, 1, votes[1],
             None, 1, votes[2], label, conf, False, "ds_high_conf"]
            for d, u, text, label, conf, votes, _ in RELEASE_EN if votes])
    return root


def test_release_clip_names_are_all_found_and_every_label_read(tmp_path, clip_file):
    root = make_release(tmp_path, clip_file)
    items = discover_static(root, {})
    got = by_id(items)
    assert sorted(got) == sorted([f"dia{d}_utt{u}" for d, u, *_ in RELEASE_EN] +
                                 [f"{video}_{file_id}" for video, file_id, *_ in RELEASE_ZH])
    for it in items:
        assert it.error is None, it.error.line()
        assert it.warnings == [], (it.id, it.warnings)
    for k, (video, file_id, meta_id, text, label, conf, votes, tier) in enumerate(RELEASE_ZH):
        it = got[f"{video}_{file_id}"]
        assert Path(it.media).name == f"{file_id}.mp4" and Path(it.media).parent.name == video
        assert it.segments[0].text == text
        lab = it.labels
        assert lab["primary"].tolist() == [BASIC7.index(label)], it.id
        assert lab["primary_confidence"][0] == pytest.approx(conf, abs=1e-6)
        assert lab["primary_tier"].tolist() == [tier] and lab["confidence_tier"].tolist() == [tier], it.id
        assert lab["annotator_labels"].shape == (1, 3) and lab["annotator_labels"][0].tolist() == list(votes)
        assert lab["annotator_ids"][0].tolist() == list(ZH_ANALYSIS["First-2500/analysis_outputs" if k < 3 else
                                                                    "Last-2500/analysis_outputs_after2500"])
        # the GoEmotions row of this very clip (numbers only in that table; two clips share the number 10)
        assert lab["goemotions"][0, GOEMOTIONS28.index("neutral")] == pytest.approx(k / 12)
    # the meta table spells the six-digit clip 00026_0: the file decides, the meta id is kept beside it
    assert got["aqgy4_0009_000260"].meta["clip_id"] == "000260"
    assert got["aqgy4_0009_000260"].meta["meta_clip_id"] == "00026_0"
    summary = summarize(items)
    assert summary["zh"] == {"corpus": "CH-SIMS v2", "clips": 12, "found": 12, "labelled": 12, "failed": 0,
                             "reasons": {}}
    assert summary["en"]["found"] == summary["en"]["labelled"] == 4 and not summary["en"]["reasons"]


def test_meld_analysis_tables_add_the_annotators_and_the_template_decides_the_path(tmp_path, clip_file):
    got = by_id(discover_static(make_release(tmp_path, clip_file), {}))
    for d, u, text, label, conf, votes, tier in RELEASE_EN:
        it = got[f"dia{d}_utt{u}"]
        # the tables' video_path says newdataset-MELD/train_splits; the release (and the template) say English/
        assert it.source == f"datasets/data-final/English/train_splits/dia{d}_utt{u}.mp4" and it.error is None
        assert it.labels["primary"].tolist() == [BASIC7.index(label)]
        assert it.labels["primary_tier"].tolist() == [tier]
        assert it.labels["annotator_labels"][0].tolist() == list(votes or ("", "", ""))
        assert it.labels["annotator_ids"][0].tolist() == (["a10", "a11", "a12"] if votes else ["", "", ""])
        assert "confidence_tier" not in it.labels


def test_simplified_tables_alone_leave_the_medium_tier_unlabelled(tmp_path, clip_file):
    items = discover_static(make_release(tmp_path, clip_file, analysis=False), {})
    got = by_id(items)
    assert all(it.error is None for it in items)
    medium = {f"{v}_{f}" for v, f, *_, tier in RELEASE_ZH if tier == "medium"}
    for video, file_id, meta_id, text, label, conf, votes, tier in RELEASE_ZH:
        it = got[f"{video}_{file_id}"]
        assert it.labels["annotator_labels"][0].tolist() == ["", "", ""]  # no analysis table: not known
        if it.id in medium:
            assert it.labels["primary"].tolist() == [-1] and it.labels["primary_tier"].tolist() == [""]
            assert it.label_attrs["primary"]["why_unknown"] == "no Basic-7 row"
        else:  # the simplified table's label and tier (it knows unanimity: 00000 is high at 0.88)
            assert it.labels["primary"].tolist() == [BASIC7.index(label)], it.id
            assert it.labels["confidence_tier"].tolist() == [tier] and it.labels["primary_tier"].tolist() == [tier]
    zh = summarize(items)["zh"]
    assert (zh["found"], zh["labelled"], zh["failed"]) == (12, 9, 0)
    assert zh["reasons"] == {"no Basic-7 row": 3}


def test_without_the_meta_table_the_files_decide_and_two_matches_are_one_error(tmp_path, clip_file):
    root = make_release(tmp_path, clip_file, meta=False)
    items = discover_static(root, {})
    got = by_id(items)
    # every clip whose number one file matches is found: 00008_0 (80), 00020_1 (201), 000260 (260), 00000 (0)
    for video, file_id, *_ in RELEASE_ZH:
        if video == "aqgy4_0009" and file_id in ("00001_0", "00010"):
            continue
        it = got[f"{video}_{file_id}"]
        assert it.error is None and Path(it.media).name == f"{file_id}.mp4", it.id
        assert it.labels["primary"][0] >= 0
    # 00001_0 and 00010 both reduce to 10, and no meta table says which text is which: one error, naming both
    failed = [it for it in items if it.error is not None]
    assert len(failed) == 1
    line = failed[0].error.line()
    assert "00001_0.mp4" in line and "00010.mp4" in line and "clip number 10 of aqgy4_0009" in line
    assert failed[0].error.file == str(root / "datasets/data-final/Chinese/Raw/aqgy4_0009")
    assert failed[0].media is None
    zh = summarize(items)["zh"]
    assert zh["failed"] == 1 and zh["reasons"] == {"several files match": 1} and zh["found"] == 10


def test_the_meta_table_tells_apart_the_files_that_share_a_number(tmp_path, clip_file):
    root = make_release(tmp_path, clip_file)
    got = by_id(discover_static(root, {}))
    a, b = got["aqgy4_0009_00001_0"], got["aqgy4_0009_00010"]
    assert Path(a.media).name == "00001_0.mp4" and a.segments[0].text == "我是维护女性心理健康的使者。"
    assert Path(b.media).name == "00010.mp4" and b.labels["primary_raw"].tolist() == ["Joy"]
    # a clip whose file is missing is reported with the meta table's id
    (root / "datasets/data-final/Chinese/Raw/aqgy4_0005/00011_1.mp4").unlink()
    miss = by_id(discover_static(root, {}))["aqgy4_0005_00011_1"]
    assert "clip not found" in miss.error.line() and miss.error.file.endswith("aqgy4_0005/00011_1.mp4")


def test_a_stated_tier_the_analysis_contradicts_is_a_warning(tmp_path, clip_file):
    root = make_release(tmp_path, clip_file)
    write_xlsx(root / "datasets/data-final/Chinese/basic7/basic7_ds_high_confidence.xlsx", ZH_BASIC7,
               [zh_b7("video_0001", "0001", "0001", "我不想嫁给李茶", "Disgust", 0.995, "low")])
    it = by_id(discover_static(root, {}))["video_0001_0001"]
    assert it.error is None and it.labels["primary_tier"].tolist() == ["high"]  # unanimous, 0.995
    assert it.labels["confidence_tier"].tolist() == ["low"]  # as the table states it
    assert any("says tier 'low'" in w and "makes it 'high'" in w for w in it.warnings), it.warnings


# ------------------------------------------------------------------------------------------------ end to end
def test_static_items_extract_to_pooled_vectors(tmp_path, clip_file):
    """Discovery -> worker -> store for two clips (no Ray): features, pooled vectors, segments and labels."""
    import extractors as registry
    from engine.records import Group
    from engine.reader import open_store
    from engine.store import FeatureStore
    from engine.pipeline.worker import ShardProcessor, process_items
    from engine.records import RunPlan

    root = make_release(tmp_path / "emos", clip_file)
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
    assert view.labels["confidence_tier"].tolist() == ["high"] and view.labels["primary_tier"].tolist() == ["high"]
    assert view.labels["annotator_labels"].tolist() == [["Disgust"] * 3]
    assert view.labels["annotator_ids"].tolist() == [["a1", "a2", "a3"]]
    # a clip whose annotators no table gives keeps the same shape, with empty strings
    assert store.item("dia0_utt2").labels["annotator_labels"].tolist() == [["", "", ""]]
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


def test_the_static_split_runs_one_actor_per_core_and_each_takes_a_shard(tmp_path, clip_file, run_extract):
    """The CLI on the static split, on a Ray of 2 CPUs without GPUs, default workers: a clip's work is mostly
    Python, so two one-core actors beat one of two cores; with two shards each actor runs one. Every clip is
    written, with its pooled vector."""
    import json

    from engine.reader import open_store

    from .conftest import FAST
    root = make_checkout(tmp_path / "emos", clip_file)
    config = tmp_path / "small_shards.yaml"
    config.write_text("store:\n  shard_items:\n    static: 4\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _ = run_extract("--split", "static", "--root", root, "--out", out, "--extractors", FAST,
                          "--config", config)
    assert code == 0
    report = json.loads((out / "static.report.json").read_text())
    assert report["counts"] == {"ok": 7}
    store = open_store(out / "static.zarr")
    assert len(store.items()) == 7 and len(store.shards) == 2
    pids = {}
    for item in report["items"]:
        pids.setdefault(store.item(item["id"]).shard.path.name, set()).add(item["worker_pid"])
    assert all(len(p) == 1 for p in pids.values()) and len(set.union(*pids.values())) == 2, pids
    assert store.item("dia0_utt0").pooled("audio").shape == (64,)
