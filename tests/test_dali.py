"""The DALI backend, run on DALI's CPU decoder, against PyAV frame for frame.

Every clip is made here with PyAV (VP9, VP8, MJPEG: what DALI decodes on the CPU) from pictures that carry their
own index (:func:`engine.media.indexed_frame`). For each clip, frame rate and size, DALI must return exactly the
frames PyAV chooses on the grid, with bitwise the same ``t`` and the same chunking, and pictures within the stated
tolerance: the two decoders convert colour with different chroma filters, so hard edges differ by up to ~36 levels
while flat areas differ by 1-2.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("nvidia.dali")

from engine import decode  # noqa: E402
from engine.decode import BackendCannotDecode, iter_frames, probe, register_backend, select_backend  # noqa: E402
from engine.decode import dali as dali_backend  # noqa: E402
from engine.media import frame_index, indexed_frame, set_rotation, write_media  # noqa: E402

W, H = 96, 64
SEQ = 16           # sequence length (chunk_frames) of most cases
MEAN_TOL = 3.0     # largest mean |DALI - PyAV| of any frame, in 8-bit levels
P99_TOL = 16.0     # 99th percentile of |DALI - PyAV| over all pixels of a clip

CFR = [k / 25 for k in range(75)]                                  # 75 frames: not a multiple of SEQ
VFR = [0.0, 0.04, 0.3, 0.31, 0.9, 1.0, 1.07, 1.5, 2.2, 2.23, 2.9, 3.3, 3.34, 4.0]
LATE = [1.5 + k / 25 for k in range(40)]                           # the video starts at 1.5 s
LONG = [k / 25 for k in range(403)]                                # 16 s: 51 sequences of 8
CLIPS = {  # name: (codec, container, frame times, sequence length)
    "vp9": ("libvpx-vp9", "webm", CFR, SEQ),
    "vp8": ("libvpx", "webm", CFR, SEQ),
    "mjpeg": ("mjpeg", "matroska", CFR, SEQ),
    "vp9_vfr": ("libvpx-vp9", "webm", VFR, 4),
    "vp9_late": ("libvpx-vp9", "webm", LATE, SEQ),
    "vp9_long": ("libvpx-vp9", "webm", LONG, 8),
}


def make_clip(path, codec, container, times, size=(W, H)):
    index = {round(t, 6): i for i, t in enumerate(times)}
    write_media(str(path), times[-1] + 0.04, size=size, frame_times=times, codec=codec, container=container,
                frame_fn=lambda t: indexed_frame(index[round(t, 6)], *size))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("dali")
    out = {}
    for name, (codec, container, times, seq) in CLIPS.items():
        p = root / f"{name}.{'mkv' if container == 'matroska' else container}"
        make_clip(p, codec, container, times)
        out[name] = (str(p), times, seq)
    return out


def shown(times, t) -> list[int]:
    """Index of the clip frame whose time is ``t`` (times come back as ``pts * time_base``)."""
    return [int(np.argmin(np.abs(np.asarray(times) - x))) for x in t]


def decode_all(path, fps, backend, short_side, seq, **kw):
    chunks = list(iter_frames(path, fps, backend=backend, info=probe(path), short_side=short_side,
                              chunk_frames=seq, device="cpu", **kw))
    assert chunks, f"{backend} gave no frame"
    frames = np.concatenate([np.asarray(c.frames) for c in chunks])
    return frames, np.concatenate([c.t for c in chunks]), [len(c.t) for c in chunks]


@pytest.mark.parametrize("name", list(CLIPS))
def test_dali_cpu_matches_pyav_frame_for_frame(clips, name):
    path, times, seq = clips[name]
    fallbacks = []
    for fps in (None, 4.0, 7.3):
        for short_side in (48,) if name == "vp9_long" else (0, 48):  # the long clip: one size keeps the test fast
            a, ta, la = decode_all(path, fps, "pyav", short_side, seq)
            b, tb, lb = decode_all(path, fps, "dali", short_side, seq, on_fallback=fallbacks.append)
            where = f"{name} fps={fps} short_side={short_side}"
            assert np.array_equal(ta, tb), f"{where}: t differs\n{ta}\n{tb}"
            assert la == lb, f"{where}: chunking differs"
            assert a.shape == b.shape, where
            # the chosen frames are the ones shown at those times: each picture carries its own index
            want = shown(times, ta)
            assert [frame_index(f) for f in a] == want, where
            assert [frame_index(f) for f in b] == want, where
            diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
            assert diff.reshape(len(a), -1).mean(axis=1).max() <= MEAN_TOL, where
            assert np.percentile(diff, 99) <= P99_TOL, where
    assert fallbacks == []  # DALI decoded every one of them itself


def test_every_frame_kept_including_the_last_partial_sequence(clips):
    path, times, seq = clips["vp9"]
    _, t, sizes = decode_all(path, None, "dali", 0, seq)
    np.testing.assert_allclose(t, times, atol=1e-9)
    assert len(times) % seq and sizes[-1] == len(times) % seq


def test_late_start_gives_pyav_times(clips):
    path, times, seq = clips["vp9_late"]
    assert probe(path).video_start_s == pytest.approx(1.5)
    _, t, _ = decode_all(path, 2.0, "dali", 0, seq)
    # nothing is on screen before 1.5 s: grid points 1.5, 2.0, 2.5 (the last frame is shown until 3.1)
    np.testing.assert_allclose(t, [1.5, 1.98, 2.5, 2.98], atol=1e-9)


def test_variable_frame_rate_keeps_each_frame_once(clips):
    path, times, seq = clips["vp9_vfr"]
    _, t, _ = decode_all(path, 2.0, "dali", 0, seq)
    # grid 0, .5, 1, ..., 4: the last frame at or before each point, each frame once
    np.testing.assert_allclose(t, [0.0, 0.31, 1.0, 1.5, 2.23, 2.9, 3.34, 4.0], atol=1e-9)


def test_long_clip_is_read_in_bounded_sequences(clips):
    path, times, seq = clips["vp9_long"]
    frames, t, sizes = decode_all(path, None, "dali", 0, seq)
    assert len(t) == len(times) and max(sizes) == seq and len(sizes) >= 50
    assert [frame_index(f) for f in frames] == list(range(len(times)))


def test_h264_falls_back_to_pyav_with_the_reason(tmp_path, caplog):
    p = tmp_path / "h264.mp4"
    write_media(str(p), 1.0, fps=25, size=(W, H), frame_fn=lambda t: indexed_frame(int(round(t * 25))))
    reasons = []
    with caplog.at_level(logging.WARNING, logger="engine.decode"):
        b, tb, _ = decode_all(str(p), 4.0, "dali", 48, SEQ, on_fallback=reasons.append)
    a, ta, _ = decode_all(str(p), 4.0, "pyav", 48, SEQ)
    assert len(reasons) == 1 and "h264" in reasons[0] and "h264" in caplog.text
    assert np.array_equal(ta, tb) and np.array_equal(a, b)


@pytest.mark.parametrize("degrees", [90, 270])
def test_rotation_matches_pyav(tmp_path, degrees):
    p = tmp_path / "rot.mp4"  # VP9 in mp4, where the display matrix can be set
    make_clip(p, "libvpx-vp9", "mp4", CFR[:20])
    set_rotation(str(p), degrees)
    a, ta, _ = decode_all(str(p), None, "pyav", 48, SEQ)
    b, tb, _ = decode_all(str(p), None, "dali", 48, SEQ)
    assert a.shape == b.shape and a.shape[1:3] == (72, 48)  # upright: width and height swap
    assert np.array_equal(ta, tb)
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() <= MEAN_TOL


def test_pipeline_is_reused_for_the_same_file_and_replaced_for_the_next(clips):
    path, _, seq = clips["vp8"]
    decode_all(path, None, "dali", 0, seq)
    ((first, _),) = dali_backend._CACHE.values()
    _, t, _ = decode_all(path, 4.0, "dali", 0, seq)  # a second frame rate: same file, same pipeline
    ((again, _),) = dali_backend._CACHE.values()
    assert again is first and len(t) == 12
    decode_all(clips["vp9"][0], None, "dali", 0, SEQ)
    ((other, _),) = dali_backend._CACHE.values()
    assert other is not first


def test_a_backend_failing_part_way_is_continued_by_pyav(clips):
    path, times, seq = clips["vp9_long"]

    @register_backend
    class GivesUp:  # the real DALI backend, stopped after three chunks as a driver error would stop it
        name = "dali_gives_up"
        available = staticmethod(dali_backend.available)

        @staticmethod
        def frames(*args, **kw):
            for i, chunk in enumerate(dali_backend.iter_frames_dali(*args, **kw)):
                if i == 3:
                    raise BackendCannotDecode("lost the device")
                yield chunk

    try:
        reasons = []
        frames, t, _ = decode_all(path, 7.3, "dali_gives_up", 0, seq, on_fallback=reasons.append)
        _, ta, _ = decode_all(path, 7.3, "pyav", 0, seq)
        assert reasons == ["dali_gives_up (cpu): lost the device"]
        assert np.array_equal(t, ta)  # nothing lost, nothing twice
        assert [frame_index(f) for f in frames] == shown(times, ta)
    finally:
        decode._REGISTRY.entries.pop("dali_gives_up", None)


def test_backend_selection_by_device():
    assert select_backend("auto", "cpu") == "pyav"       # PyAV is the better CPU decoder: every codec
    assert select_backend("dali", "cpu") == "dali"
    ok, why = dali_backend.available("gpu")
    if not ok:  # this machine has no usable GPU: auto says PyAV, an explicit request says why it cannot
        assert select_backend("auto", "gpu") == "pyav"
        with pytest.raises(RuntimeError, match=why.split(" (")[0]):
            select_backend("dali", "gpu")


def test_extract_end_to_end_with_dali_on_the_cpu_writes_pyav_times(tmp_path, run_extract):
    """``python -m engine.extract`` with ``decode: {backend: dali, device: cpu}`` on VP9 films: the same visual
    times as the PyAV run, features close, and each item says which decoder made its frames."""
    import json

    from engine.datasets.demo import write_film
    from engine.reader import open_store

    root = tmp_path / "emos"
    lines = [("One sentence here.", "Joy", 1.4), ("Another one there.", "Anger", 1.3)]
    for k, name in enumerate(["Vp9 A", "Vp9 B"]):
        d = write_film(root, name, "en", name, lines, fps=12, size=(96, 64), seed=k)
        meta = json.loads((d / "sentence_level_timestamps.json").read_text())
        write_media(str(d / f"{name}.mp4"), meta["duration"], fps=12, size=(96, 64), codec="libvpx-vp9",
                    frame_fn=lambda t, k=k: indexed_frame(int(round(t * 12)) + 40 * k, 96, 64))
    stores = {}
    for backend in ("pyav", "dali"):
        cfg = tmp_path / f"{backend}.yaml"
        cfg.write_text(f"decode: {{backend: {backend}, device: cpu}}\n")
        out = tmp_path / backend
        code, printed = run_extract("--split", "stream", "--root", root, "--out", out, "--config", cfg,
                                    "--extractors", "frame_stats")
        assert code == 0, printed
        stores[backend] = open_store(out / "stream.zarr")
    for name in ("Vp9 A", "Vp9 B"):
        a, b = stores["pyav"].item(name), stores["dali"].item(name)
        np.testing.assert_array_equal(a.groups["visual"].t, b.groups["visual"].t)
        t = a.groups["visual"].t
        assert len(t) >= 16 and t[0] == 0 and np.allclose(np.diff(t), 0.25)  # the 4 fps grid over the whole film
        np.testing.assert_allclose(np.asarray(a.groups["visual"].features)[:, 0],
                                   np.asarray(b.groups["visual"].features)[:, 0], atol=4 / 255)  # mean luma
        assert a.attrs["decode"]["backend"] == "pyav" and b.attrs["decode"]["backend"] == "dali"
        assert b.attrs["decode"]["fallback"] is None
    # the decoder is part of the visual group's cache key: switching it recomputes, it never mixes
    assert stores["pyav"].item("Vp9 A").groups["visual"].attrs["settings"]["decode"] == "pyav:cpu"
    assert stores["dali"].item("Vp9 A").groups["visual"].attrs["settings"]["decode"] == "dali:cpu"
