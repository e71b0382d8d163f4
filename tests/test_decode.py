"""Decoding on the time grid, on generated video whose frames carry their own timestamp in their brightness."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from engine.decode import decode_audio, iter_frames_pyav, probe, select_backend
from engine.errors import MediaError
from engine.media import set_rotation, solid, tone, write_media

W, H = 64, 48


def level(t: float) -> int:
    return int(round(20 + t * 40))  # 20 .. 220 over 5 s; H.264 keeps a flat frame within +-3


def frames_of(path, fps, **kw):
    chunks = list(iter_frames_pyav(str(path), fps, short_side=0, **kw))
    if not chunks:
        return np.zeros((0, H, W, 3), np.uint8), np.zeros(0)
    return np.concatenate([c.frames for c in chunks]), np.concatenate([c.t for c in chunks])


def assert_content_matches_time(frames, t):
    got = frames.reshape(len(frames), -1).mean(axis=1)
    want = np.array([level(x) for x in t])
    assert np.abs(got - want).max() < 4, list(zip(t, got, want))


def test_constant_rate_sampled_at_4fps(tmp_path):
    p = tmp_path / "cfr.mp4"
    write_media(str(p), 3.0, fps=25, size=(W, H), frame_fn=lambda t: solid(W, H, level(t)))
    frames, t = frames_of(p, 4)
    # the frame on screen at k/4 s is the last one at or before it: 0, 0.24, 0.48, 0.72, 1.0, ...
    np.testing.assert_allclose(t, [np.floor(k / 4 * 25 + 1e-9) / 25 for k in range(12)], atol=1e-6)
    assert_content_matches_time(frames, t)


def test_every_frame_and_chunks_are_bounded(tmp_path):
    p = tmp_path / "all.mp4"
    write_media(str(p), 2.0, fps=25, size=(W, H), frame_fn=lambda t: solid(W, H, level(t)))
    chunks = list(iter_frames_pyav(str(p), None, short_side=0, chunk_frames=7))
    assert all(len(c.t) <= 7 for c in chunks)
    t = np.concatenate([c.t for c in chunks])
    np.testing.assert_allclose(t, np.arange(50) / 25, atol=1e-6)
    assert_content_matches_time(np.concatenate([c.frames for c in chunks]), t)


def test_variable_frame_rate_and_late_first_timestamp(tmp_path):
    times = [0.5, 0.56, 0.7, 1.0, 1.04, 1.5, 2.2, 2.23, 2.9]
    p = tmp_path / "vfr.mp4"
    write_media(str(p), 3.0, frame_times=times, size=(W, H), frame_fn=lambda t: solid(W, H, level(t)))
    frames, t = frames_of(p, None)
    np.testing.assert_allclose(t, times, atol=1e-6)
    assert_content_matches_time(frames, t)
    frames, t = frames_of(p, 2)  # grid 0, .5, 1, 1.5, 2, 2.5: nothing is on screen before 0.5
    np.testing.assert_allclose(t, [0.5, 1.0, 1.5, 2.23], atol=1e-6)
    assert_content_matches_time(frames, t)
    assert probe(str(p)).duration_s == pytest.approx(2.9 + 1 / 25, abs=0.1)


def test_odd_size_is_scaled_by_short_side_and_one_frame_video(tmp_path):
    p = tmp_path / "odd.mp4"
    write_media(str(p), 1.0, fps=5, size=(161, 97), frame_fn=lambda t: solid(161, 97, 100))
    chunk = next(iter_frames_pyav(str(p), None, short_side=48))
    assert chunk.frames.shape[1:] == (48, 80, 3)  # 97 -> 48 rows, width keeps the aspect ratio (even)
    one = tmp_path / "one.mp4"
    write_media(str(one), 0.04, frame_times=[0.0], size=(W, H), frame_fn=lambda t: solid(W, H, 90))
    frames, t = frames_of(one, 4)
    assert t.tolist() == [0.0] and frames.shape == (1, H, W, 3)


def test_small_pictures_are_not_scaled_up_unless_asked(tmp_path):
    """A clip smaller than ``short_side`` keeps its pixels (scaling up only costs every extractor time)."""
    p = tmp_path / "small.mp4"
    write_media(str(p), 1.0, fps=5, size=(W, H))
    native = next(iter_frames_pyav(str(p), None, short_side=96))
    up = next(iter_frames_pyav(str(p), None, short_side=96, upscale=True))
    assert native.frames.shape[1:] == (H, W, 3)
    assert up.frames.shape[1:] == (96, 128, 3)
    assert np.array_equal(native.frames, next(iter_frames_pyav(str(p), None, short_side=0)).frames)


@pytest.mark.parametrize("degrees", [90, 270])
def test_rotation_metadata_is_applied(tmp_path, degrees):
    p = tmp_path / "rot.mp4"
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = 255  # left half white
    write_media(str(p), 0.5, fps=4, size=(W, H), frame_fn=lambda t: img)
    set_rotation(str(p), degrees)
    frames, _ = frames_of(p, None)
    assert frames.shape[1:3] == (W, H)  # shown upright: width and height swap
    # a counterclockwise quarter turn brings the left half to the bottom; a clockwise one to the top
    top, bottom = frames[0, : W // 2 - 4].mean(), frames[0, W // 2 + 4:].mean()
    white_at_bottom = degrees == 90
    assert (bottom > 200 and top < 50) if white_at_bottom else (top > 200 and bottom < 50)


def test_audio_is_mono_at_the_requested_rate_and_may_outlast_the_video(tmp_path):
    p = tmp_path / "av.mp4"
    write_media(str(p), 2.0, fps=10, size=(W, H), audio_fn=tone(440, 0.5), audio_rate=44100, audio_s=3.0)
    info = probe(str(p))
    assert info.has_audio and info.duration_s == pytest.approx(3.0, abs=0.1)
    track = decode_audio(str(p), 16000, chunk_s=0.5)  # many pieces: chunked resampling must be seamless
    assert track.sample_rate == 16000 and track.wave.dtype == np.float32
    assert len(track.wave) / 16000 == pytest.approx(3.0, abs=0.1)
    spec = np.abs(np.fft.rfft(track.wave[4000:36000]))
    assert np.argmax(spec) * 16000 / 32000 == pytest.approx(440, abs=2)
    short = tmp_path / "short.mp4"
    write_media(str(short), 2.0, fps=10, size=(W, H), audio_fn=tone(440), audio_s=0.5)
    assert len(decode_audio(str(short), 16000).wave) / 16000 == pytest.approx(0.5, abs=0.05)


def test_no_audio_and_bad_files(tmp_path):
    p = tmp_path / "silent.mp4"
    write_media(str(p), 1.0, fps=10, size=(W, H))
    assert probe(str(p)).has_audio is False and decode_audio(str(p), 16000) is None
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    for bad, words in ((empty, "empty"), (junk, "not a readable media file"), (tmp_path / "nope.mp4", "not found")):
        with pytest.raises(MediaError, match=words) as e:
            probe(str(bad))
        assert e.value.file == str(bad)


def test_truncated_file_keeps_what_decodes(tmp_path):
    p = tmp_path / "full.mp4"
    write_media(str(p), 3.0, fps=25, size=(W, H), frame_fn=lambda t: solid(W, H, level(t)))
    data = p.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        frames, t = frames_of(cut, None)
    except MediaError as exc:  # moov atom at the end: nothing decodes, and the error says so
        assert exc.file == str(cut)
        return
    assert len(t) < 75
    if len(t):
        assert_content_matches_time(frames, t)


def test_backend_selection_without_a_gpu():
    assert select_backend("pyav") == "pyav"
    assert select_backend("auto") == "pyav"  # no CUDA here
    with pytest.raises(RuntimeError, match="DALI cannot run here"):
        select_backend("dali")
    with pytest.raises(ValueError):
        select_backend("ffmpeg")


def test_display_rotation_is_read_once_for_the_gpu_path(tmp_path):
    from engine.decode import display_rotation, rotate
    p = tmp_path / "r.mp4"
    write_media(str(p), 0.5, fps=4, size=(W, H))
    assert display_rotation(str(p)) == 0
    set_rotation(str(p), 270)
    assert display_rotation(str(p)) == -90
    x = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    assert rotate(x, 90).shape == (2, 4, 3, 3) and np.array_equal(rotate(x, 90)[1], np.rot90(x[1]))
    assert rotate(x, 0) is x


# ---- skipping off-grid frames the decoder never needs: the same frames, times and pixels as a full decode --------
def write_with_b_frames(path, times, size=(96, 64)):
    """H.264 with x264's B-frame pyramid (what most films carry; the test media above has no B-frames): moving
    content, so the encoder uses them."""
    from fractions import Fraction

    import av

    from engine.media import indexed_frame
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"preset": "veryfast", "bf": "3"}
        for i, t in enumerate(times):
            img = indexed_frame(i, w, h)
            x = int(t * 40) % (w - 8)
            img[h // 2:, x:x + 8] = (220, 60, 60)  # a moving box under the index squares
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts, fr.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def reference_frames(path, fps, short_side):
    """The PyAV path as it was before it skipped frames: every frame decoded, each kept one converted by its own
    ``reformat`` call."""
    import av

    from engine.decode.types import scaled_size
    from kernels.align import on_grid
    frames, times, pending = [], [], None

    def keep(f, t):
        w, h = scaled_size(f.width, f.height, short_side)
        frames.append(f.reformat(width=w, height=h, format="rgb24").to_ndarray())
        times.append(t)

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        for f in c.decode(s):
            if f.pts is None:
                continue
            t = f.pts * tb
            if pending is not None:
                if t <= pending[1]:
                    continue
                if on_grid(pending[1], t, fps):
                    keep(*pending)
            pending = (f, t)
        pf, pt = pending
        dur = float(pf.duration * tb) if pf.duration else 1.0 / float(s.average_rate)
        if on_grid(pt, pt + dur, fps):
            keep(pf, pt)
    return np.stack(frames), np.asarray(times)


def skipped_clips(tmp_path):
    rng = np.random.default_rng(0)
    vfr = np.round(np.cumsum(rng.uniform(0.02, 0.08, 150)), 3)  # 150 frames at 12-50 fps over ~7.5 s
    late = 1.3 + np.arange(150) / 25  # 25 fps, the first frame at 1.3 s
    # MP4 carries H.264 as length-prefixed NAL units; MPEG-TS as an Annex B byte stream (start codes)
    for name, times, ext in (("vfr", vfr, "mp4"), ("late", late, "mp4"), ("annexb", late, "ts")):
        path = tmp_path / f"{name}.{ext}"
        write_with_b_frames(path, times)
        yield name, path


def test_skipping_off_grid_frames_keeps_frames_times_and_pixels(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="engine.decode.pyav")
    for name, path in skipped_clips(tmp_path):
        for fps in (4.0, 2.0, 1.0):
            caplog.clear()
            chunks = list(iter_frames_pyav(str(path), fps, short_side=48, chunk_frames=5))
            got, t = np.concatenate([c.frames for c in chunks]), np.concatenate([c.t for c in chunks])
            want, want_t = reference_frames(path, fps, 48)
            assert t.tolist() == want_t.tolist(), (name, fps)
            assert np.array_equal(got, want), (name, fps)
            skipped = [r.getMessage() for r in caplog.records if "frames decoded" in r.getMessage()]
            assert skipped and not skipped[0].split(": ")[1].startswith("150 of"), (name, fps, skipped)


def test_a_packet_is_left_out_only_when_it_says_no_picture_refers_to_it():
    from engine.decode.pyav import _h264_unreferenced, _h264_units, _nal_length_size
    avcc = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0])
    assert _nal_length_size(avcc) == 4 and _nal_length_size(b"\x00\x00\x00\x01\x67") is None

    def nal(head, n=3):
        return len(bytes([head]) + b"\x88" * n).to_bytes(4, "big") + bytes([head]) + b"\x88" * n

    def left_out(data, length_size):
        units = _h264_units(memoryview(data), length_size)
        return units is not None and _h264_unreferenced(units)

    sei, b_slice, ref_b, idr = 0x06, 0x01, 0x21, 0x65  # nal_ref_idc in bits 5-6, the unit's type in bits 0-4
    assert left_out(nal(sei) + nal(b_slice), 4)
    assert not left_out(nal(sei) + nal(ref_b), 4)
    assert not left_out(nal(b_slice) + nal(ref_b), 4)  # every unit counts, not the first slice
    assert not left_out(nal(idr), 4)
    assert not left_out(nal(0x05), 4)  # an IDR picture, even one that says nal_ref_idc 0
    assert not left_out(nal(sei), 4)  # no slice: decoded
    assert not left_out(nal(0x08) + nal(b_slice), 4)  # a PPS that later pictures may use
    assert not left_out(nal(0x81), 4)  # forbidden_zero_bit set: not read as H.264
    assert not left_out(b"\xff\xff\xff\xff\x01", 4)  # a length past the end: decoded
    assert not left_out(nal(b_slice) + b"\x00\x00", 4)  # bytes left over: decoded
    assert not left_out(b"\x00\x00\x00\x00" + nal(b_slice), 4)  # a unit of length 0: decoded
    assert left_out(b"\x00\x00\x00\x01\x09\x10\x00\x00\x01\x06\x05\x00\x00\x01\x01\x9a", None)
    assert left_out(b"\x00\x00\x00\x01\x01\x9a\x00\x00", None)  # trailing zeros belong to no unit
    assert not left_out(b"\x00\x00\x00\x01\x41\x9a", None)
    assert not left_out(b"\x00\x00\x00\x01\x07\x64\x00\x00\x01\x01\x9a", None)
    assert not left_out(b"\x12\x34\x00\x00\x01\x01\x9a", None)  # no start code at the start
    # a length-prefixed reference slice of 257 bytes whose length reads as a start code before a non-reference head
    assert not left_out((257).to_bytes(4, "big") + b"\x41" + b"\x88" * 256, None)


def _sps(gaps: bool, refs: int = 2) -> bytes:
    """A baseline-profile SPS NAL unit, written bit by bit (H.264 7.3.2.1.1) up to the gaps flag."""
    def ue(v):
        b = bin(v + 1)[2:]
        return "0" * (len(b) - 1) + b
    bits = f"{66:08b}" + "0" * 8 + f"{30:08b}" + ue(0) + ue(0) + ue(0) + ue(0) + ue(refs) + str(int(gaps)) + "1"
    bits += "0" * (-len(bits) % 8)
    return b"\x67" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def test_the_sps_is_read_as_the_encoder_wrote_it(tmp_path):
    import av

    from engine.decode.pyav import _avcc_sps, _h264_sps
    for refs, params in ((6, "ref=6"), (5, "ref=5:cqm=jvt")):  # cqm=jvt: scaling matrices in a High profile SPS
        path = tmp_path / f"r{refs}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            s.options = {"preset": "veryfast", "x264-params": params}
            for i in range(3):
                for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        with av.open(str(path)) as c:
            extradata = bytes(c.streams.video[0].codec_context.extradata)
        (unit,) = _avcc_sps(extradata)
        assert unit[1] == 100 and _h264_sps(unit) == {"max_num_ref_frames": refs, "gaps_in_frame_num_allowed": False}
    assert _h264_sps(_sps(True, 4)) == {"max_num_ref_frames": 4, "gaps_in_frame_num_allowed": True}
    assert _h264_sps(b"\x67\x42") is None


def test_nothing_is_left_out_of_a_stream_whose_sps_allows_frame_num_gaps():
    """FFmpeg fills a frame_num gap counting from the last picture decoded, even a non-reference one: leaving one
    out would change the reference lists of later pictures."""
    import av

    from engine.decode.pyav import _H264Gate

    def avcc(*sps):
        out = bytes([1, 66, 0, 30, 0xFF, 0xE0 | len(sps)])
        for unit in sps:
            out += len(unit).to_bytes(2, "big") + unit
        return out + b"\x00"

    def packet(*heads):
        return av.Packet(b"".join(len(bytes([h, 0x88])).to_bytes(4, "big") + bytes([h, 0x88]) for h in heads))

    b_slice, ref_p = 0x01, 0x41
    assert _H264Gate(avcc(_sps(False))).leave_out(packet(b_slice), off_grid=True)
    assert not _H264Gate(avcc(_sps(False))).leave_out(packet(b_slice), off_grid=False)
    assert not _H264Gate(avcc(_sps(True))).leave_out(packet(b_slice), off_grid=True)
    assert not _H264Gate(avcc()).leave_out(packet(b_slice), off_grid=True)  # no SPS seen: nothing left out
    assert not _H264Gate(avcc(b"\x67\x42")).leave_out(packet(b_slice), off_grid=True)  # an SPS that does not parse
    gate = _H264Gate(avcc(_sps(False)))
    sps_in_band = av.Packet(len(_sps(True)).to_bytes(4, "big") + _sps(True) + bytes(packet(ref_p)))
    assert not gate.leave_out(sps_in_band, off_grid=False)
    assert not gate.leave_out(packet(b_slice), off_grid=True)  # a later SPS allows gaps: never again
    class WithNewExtradata:  # a packet as a demuxer marks one where the stream's parameter sets change
        def __bytes__(self):
            return bytes(packet(b_slice))

        def has_sidedata(self, kind):
            return kind == "new_extradata"

    gate = _H264Gate(avcc(_sps(False)))
    assert not gate.leave_out(WithNewExtradata(), off_grid=True)
    assert not gate.leave_out(packet(b_slice), off_grid=True)  # parameter sets it cannot read: never again
    # Annex B: the SPS arrives in the packets, nothing is left out before it
    gate = _H264Gate(None)
    assert not gate.leave_out(av.Packet(b"\x00\x00\x00\x01\x01\x9a"), off_grid=True)
    gate.leave_out(av.Packet(b"\x00\x00\x00\x01" + _sps(False) + b"\x00\x00\x01\x65\x88"), off_grid=False)
    assert gate.leave_out(av.Packet(b"\x00\x00\x00\x01\x01\x9a"), off_grid=True)


def test_a_stream_that_breaks_the_prediction_is_decoded_again_after_the_last_frame_yielded(tmp_path, monkeypatch):
    from engine.decode import pyav
    path = dict(skipped_clips(tmp_path))["vfr"]
    want, want_t = reference_frames(path, 4.0, 48)
    real = pyav._frames_skipping

    def breaks_after_two_chunks(*args, **kw):
        for i, chunk in enumerate(real(*args, **kw)):
            if i == 2:
                raise pyav._Unpredictable("as a damaged stream would")
            yield chunk

    monkeypatch.setattr(pyav, "_frames_skipping", breaks_after_two_chunks)
    chunks = list(iter_frames_pyav(str(path), 4.0, short_side=48, chunk_frames=5))
    assert np.concatenate([c.t for c in chunks]).tolist() == want_t.tolist()
    assert np.array_equal(np.concatenate([c.frames for c in chunks]), want)
    monkeypatch.setattr(pyav, "_frames_skipping", real)
    monkeypatch.setattr(pyav, "_LOOKAHEAD", 0)  # no look-ahead: a B-frame's packet comes too late, and is caught
    chunks = list(iter_frames_pyav(str(path), 4.0, short_side=48, chunk_frames=5))
    assert np.concatenate([c.t for c in chunks]).tolist() == want_t.tolist()


def test_a_film_decodes_on_the_workers_cores_and_a_short_clip_on_one_thread(tmp_path, monkeypatch):
    """``decode.threads: 0``: a film's decoder gets the worker's cores (not FFmpeg's own choice, cores + 1 frame
    threads, which cost more CPU and more time on 2 cores); a clip under 20 s one thread; a set count wins."""
    from engine.decode import pyav
    opened, real = [], pyav._open
    monkeypatch.setattr(pyav, "_open", lambda path: opened.append(real(path)) or opened[-1])
    film, clip = str(tmp_path / "film.mp4"), str(tmp_path / "clip.mp4")
    write_media(film, 21.0, fps=10, size=(32, 24), audio_fn=None)
    write_media(clip, 3.0, fps=10, size=(32, 24), audio_fn=None)

    def threads(path, **kw):
        opened.clear()
        frames = iter_frames_pyav(path, 4.0, short_side=0, **kw)
        next(frames)
        n = opened[0].streams.video[0].codec_context.thread_count
        frames.close()
        return n
    cores = (os.cpu_count() or 1) + 3  # not FFmpeg's own choice here (cores + 1)
    assert threads(film, cores=cores) == cores
    assert threads(clip, cores=cores) == 1
    assert threads(film, cores=cores, threads=2) == 2 and threads(clip, threads=2) == 2
