"""EmoS stream discovery: formats, clip resolution, label alignment, and a clear error for each bad item."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.datasets import discover
from engine.datasets.emos_labels import align_utterances, load_json, parse_mmss_range
from engine.datasets.emos_stream import STREAM_DIR, resolve_clip
from engine.records import Segment
from engine.labels import BASIC7, GOEMOTIONS28, basic7_index, goemotion_name

from .conftest import make_corpus


def film_dir(root, name):
    return root / STREAM_DIR / name


def test_discovery_reads_release_formats(corpus):
    items = {it.id: it for it in discover("stream", corpus)}
    assert sorted(items) == ["Alpha Film", "Beta Film"]
    beta = items["Beta Film"]
    assert beta.error is None and beta.lang == "zh" and beta.meta["film"] == "测试影片"
    assert beta.source == "datasets/streaming-finalsplit/Beta Film/Beta Film.mp4"
    assert [s.text for s in beta.segments][0] == "那年的雨很大。"
    assert beta.labels["primary"].tolist() == [BASIC7.index(x) for x in ("Neutral", "Sadness", "Surprise")]
    assert beta.labels["turning_points"].tolist() == [1, 2]
    assert beta.labels["primary_raw"][0] == "Neutral/自然"


def test_fenced_and_plain_json(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('```json\n{"a": 1}\n```\n', encoding="utf-8")
    assert load_json(p) == {"a": 1}
    p.write_text('{"a": 2}', encoding="utf-8")
    assert load_json(p) == {"a": 2}
    p.write_text('```json\n{"a": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError):
        load_json(p)


def test_ranges_and_vocabularies():
    assert parse_mmss_range("00:03-00:12") == (3.0, 12.0)
    assert parse_mmss_range("10:39 - 10:41") == (639.0, 641.0)
    with pytest.raises(ValueError):
        parse_mmss_range("00:03")
    assert basic7_index("Anger/愤怒") == 0 and basic7_index("Joy") == 3 and basic7_index("Neutral/自然") == 4
    assert basic7_index("Anger/喜悦") == -1 and basic7_index("") == -1
    assert goemotion_name("grief 😢") == "grief" and goemotion_name("Disapproval 👎") == "disapproval"
    assert goemotion_name("determination") is None
    assert len(BASIC7) == 7 and len(GOEMOTIONS28) == 28


def test_alignment_by_largest_overlap_and_warnings():
    segs = [Segment(0.0, 2.16, "a"), Segment(3.6, 8.02, "b"), Segment(12.2, 12.9, "c"), Segment(40.0, 41.0, "d")]
    utts = [
        {"timestamp_range": "00:00-00:03", "emotion_primary": "Anger/愤怒", "emotion_secondary": ["anger"],
         "intensity": 5},
        {"timestamp_range": "00:03-00:12", "emotion_primary": "Disgust", "emotion_secondary": ["pride", "awe"],
         "intensity": 3},
        {"timestamp_range": "00:13-00:50", "emotion_primary": "Bored", "emotion_secondary": ["realization 💡"],
         "intensity": 9},
    ]
    warnings = []
    labels, attrs = align_utterances(segs, utts, clip_s=42.0, warnings=warnings)
    # seg b overlaps utterance 1 by 0.4 s and utterance 2 by 4.4 s; seg c lies in the whole second after 00:12
    assert labels["primary"].tolist() == [0, 1, 1, -1]
    assert labels["intensity"].tolist() == [5, 3, 3, -1]
    g = labels["goemotions"]
    assert g[0, GOEMOTIONS28.index("anger")] == 1 and g[1, GOEMOTIONS28.index("pride")] == 1
    assert g[3, GOEMOTIONS28.index("realization")] == 1 and g.sum() == 4
    assert labels["secondary_raw"][1] == "pride;awe"
    text = " ".join(warnings)
    assert "runs past the clip end" in text and "'Bored'" in text and "'awe'" in text
    assert attrs["primary"]["names"] == list(BASIC7)


def test_clip_resolution_rule(tmp_path):
    d = tmp_path / "Black Ice"
    d.mkdir()
    assert resolve_clip(d, "黑冰.mp4")[0] is None and "no full clip" in resolve_clip(d, "黑冰.mp4")[1]
    (d / "segment001.mp4").write_bytes(b"x")
    (d / "黑冰.mp4").write_bytes(b"x")
    assert resolve_clip(d, "黑冰.mp4")[0].name == "黑冰.mp4"             # rule 2: the JSON clip
    (d / "uncut source.mp4").write_bytes(b"x")
    assert resolve_clip(d, None)[1].startswith("ambiguous clip")          # never a silent guess
    (d / "Black Ice.mp4").write_bytes(b"x")
    assert resolve_clip(d, "黑冰.mp4")[0].name == "Black Ice.mp4"        # rule 1 wins
    e = tmp_path / "Other"
    e.mkdir()
    (e / "only one.mp4").write_bytes(b"x")
    (e / "segment002.mp4").write_bytes(b"x")
    assert resolve_clip(e, "missing.mp4")[0].name == "only one.mp4"     # rule 3: the one full clip


def _break(root, film, how):
    d = film_dir(root, film)
    ts = d / "sentence_level_timestamps.json"
    meta = json.loads(ts.read_text(encoding="utf-8"))
    if how == "malformed":
        ts.write_text(ts.read_text(encoding="utf-8")[:-20], encoding="utf-8")
    elif how == "end<=start":
        meta["segments"][1]["end"] = meta["segments"][1]["start"]
        ts.write_text(json.dumps(meta), encoding="utf-8")
    elif how == "outside":
        meta["segments"][-1]["end"] = meta["duration"] + 30
        ts.write_text(json.dumps(meta), encoding="utf-8")
    elif how == "bad emotion json":
        (d / f"{film}.emotion.json").write_text("```json\n{\"utterances\": [\n```", encoding="utf-8")
    elif how == "no clip":
        (d / f"{film}.mp4").unlink()
    return d


@pytest.mark.parametrize("how,words,file", [
    ("malformed", "malformed JSON", "sentence_level_timestamps.json"),
    ("end<=start", "end", "sentence_level_timestamps.json"),
    ("outside", "outside the clip", "sentence_level_timestamps.json"),
    ("bad emotion json", "malformed JSON", "Alpha Film.emotion.json"),
    ("no clip", "no full clip", "Alpha Film"),
])
def test_each_bad_item_gets_an_error_naming_item_and_file(tmp_path, how, words, file):
    root = make_corpus(tmp_path / "emos")
    _break(root, "Alpha Film", how)
    items = {it.id: it for it in discover("stream", root)}
    assert items["Beta Film"].error is None
    err = items["Alpha Film"].error
    assert err is not None and words in err.message
    assert err.file.endswith(file) and err.line().startswith("Alpha Film: ")


def test_missing_stream_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="streaming-finalsplit"):
        discover("stream", tmp_path)


def test_unusable_folder_names_fail_alone(tmp_path):
    root = make_corpus(tmp_path / "emos")
    (root / STREAM_DIR / "__bad").mkdir()
    items = {it.id: it for it in discover("stream", root)}
    assert "reserved" in items["__bad"].error.message
    assert items["Alpha Film"].error is None
    assert np.all(items["Alpha Film"].labels["primary"] >= 0)
