"""Bad input end to end: every bad item fails alone with one line naming it and its file; the rest completes."""
from __future__ import annotations

import json

from engine.datasets.emos_stream import STREAM_DIR
from engine.datasets.demo import write_film
from engine.media import write_media
from engine.reader import open_store

from .conftest import FAST

GOOD = [("One sentence here.", "Joy", 1.2), ("Another one there.", "Anger", 1.2)]


def film(root, name, media=True):
    write_film(root, name, "en", name, GOOD, fps=10, size=(64, 48), media=media)
    return root / STREAM_DIR / name


def test_bad_items_fail_alone_with_clear_errors(tmp_path, run_extract):
    root = tmp_path / "emos"
    film(root, "Good")
    film(root, "Missing Clip", media=False)
    (film(root, "Zero Bytes") / "Zero Bytes.mp4").write_bytes(b"")
    d = film(root, "Truncated")
    data = (d / "Truncated.mp4").read_bytes()
    (d / "Truncated.mp4").write_bytes(data[: len(data) // 3])
    (film(root, "Not Video") / "Not Video.mp4").write_text("hello, I am a text file")
    d = film(root, "Silent")
    meta = json.loads((d / "sentence_level_timestamps.json").read_text())
    write_media(str(d / "Silent.mp4"), meta["duration"], fps=10, size=(64, 48))  # video only
    d = film(root, "Bad Json")
    (d / "sentence_level_timestamps.json").write_text('{"segments": [', encoding="utf-8")
    d = film(root, "Bad Segments")
    meta = json.loads((d / "sentence_level_timestamps.json").read_text())
    meta["segments"][0]["end"] = meta["segments"][0]["start"] - 1
    (d / "sentence_level_timestamps.json").write_text(json.dumps(meta), encoding="utf-8")
    d = film(root, "Wrong Duration")
    meta = json.loads((d / "sentence_level_timestamps.json").read_text())
    meta["duration"] += 20.0
    (d / "sentence_level_timestamps.json").write_text(json.dumps(meta), encoding="utf-8")

    out = tmp_path / "out"
    code, printed = run_extract("--split", "stream", "--root", root, "--out", out, "--extractors", FAST)
    assert code == 1
    report = json.loads((out / "stream.report.json").read_text())
    status = {r["id"]: r for r in report["items"]}
    assert status["Good"]["status"] == "ok" and status["Silent"]["status"] == "ok"
    assert status["Silent"]["missing"] == {"audio": "no audio track"}
    expect = {
        "Missing Clip": ("no full clip", "Missing Clip"),
        "Zero Bytes": ("empty", "Zero Bytes.mp4"),
        "Truncated": ("", "Truncated.mp4"),
        "Not Video": ("not a readable media file", "Not Video.mp4"),
        "Bad Json": ("malformed JSON", "sentence_level_timestamps.json"),
        "Bad Segments": ("<= start", "sentence_level_timestamps.json"),
        "Wrong Duration": ("metadata says", "Wrong Duration.mp4"),
    }
    for name, (words, file) in expect.items():
        r = status[name]
        assert r["status"] == "failed", name
        line = r["error"]
        assert line.startswith(f"{name}: ") and words in line and file in line and "\n" not in line, line
        assert line in report["errors"]
        assert name in printed  # the summary table lists it
    store = open_store(out / "stream.zarr")
    assert store.items() == ["Good", "Silent"]
    silent = store.item("Silent")
    assert sorted(silent.groups) == ["text", "visual"] and silent.attrs["missing"]["audio"] == "no audio track"


def test_a_file_that_goes_bad_later_keeps_what_was_written(tmp_path, run_extract):
    root = tmp_path / "emos"
    d = film(root, "Good")
    film(root, "Other")
    out = tmp_path / "out"
    assert run_extract("--split", "stream", "--root", root, "--out", out, "--extractors", FAST)[0] == 0
    before = open_store(out / "stream.zarr").window("Good", 0, 2)["audio"].features.copy()
    (d / "Good.mp4").write_bytes(b"garbage" * 100)
    code, _ = run_extract("--split", "stream", "--root", root, "--out", out, "--extractors", FAST)
    assert code == 1
    report = {r["id"]: r for r in json.loads((out / "stream.report.json").read_text())["items"]}
    assert report["Good"]["status"] == "failed" and "Good.mp4" in report["Good"]["error"]
    assert report["Other"]["status"] == "cached"
    store = open_store(out / "stream.zarr")
    assert store.items() == ["Good", "Other"]
    assert (store.window("Good", 0, 2)["audio"].features == before).all()
