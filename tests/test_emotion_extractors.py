"""The emotion extractors on real content: a photographed face moving through a video, synthetic voiced speech
with a known pitch contour, and speech-like sound against silence and music."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter

import extractors as registry
from engine.decode import iter_frames
from engine.media import write_media

skimage_data = pytest.importorskip("skimage.data", reason="the face test composites a photograph from scikit-image")

SR = 16000

# ---- a video with a real face --------------------------------------------------------------------------------------
# astronaut() is a 512x512 portrait. FACE is her face (brow line to chin, cheek to cheek) marked by hand; OpenCV's
# frontal cascade and MTCNN both find it at IoU 0.85-0.9 on the photograph itself. HEAD is the region pasted.
FACE = (179, 66, 271, 174)  # x0, y0, x1, y1
HEAD = (130, 20, 320, 230)
W, H, FPS, DURATION = 640, 360, 5, 4.0
ABSENT = (2.0, 3.0)         # seconds without any face
SECOND_FACE = (1.0, 2.0)    # seconds with a smaller second face in the corner


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from skimage.transform import resize
    return (resize(img, (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)


def face_box(t: float):
    """The true face box at ``t`` (fractions of the frame) and where the head is pasted, or None when absent."""
    if ABSENT[0] <= t < ABSENT[1]:
        return None
    u = t / DURATION
    scale = H * (0.2 + 0.25 * u) / (FACE[3] - FACE[1])         # the face grows from 20% to 45% of the height
    fx0 = W * (0.3 + 0.4 * u) - scale * (FACE[2] - FACE[0]) / 2  # and moves right, bobbing up and down
    fy0 = H * (0.45 + 0.1 * math.sin(2 * math.pi * u)) - scale * (FACE[3] - FACE[1]) / 2
    box = (fx0 / W, fy0 / H, (fx0 + scale * (FACE[2] - FACE[0])) / W, (fy0 + scale * (FACE[3] - FACE[1])) / H)
    return box, scale, fx0 - scale * (FACE[0] - HEAD[0]), fy0 - scale * (FACE[1] - HEAD[1])


def _paste(img, head, scale, ox, oy):
    patch = _resize(head, round(head.shape[0] * scale), round(head.shape[1] * scale))
    x0, y0 = round(ox), round(oy)
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(W, x0 + patch.shape[1]), min(H, y0 + patch.shape[0])
    img[ys:ye, xs:xe] = patch[ys - y0:ye - y0, xs - x0:xe - x0]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    """Decoded frames (upright, short side 256, as the engine gives them) and their times."""
    astronaut = skimage_data.astronaut()
    head = astronaut[HEAD[1]:HEAD[3], HEAD[0]:HEAD[2]]
    background = _resize(skimage_data.rocket(), H, W)  # a real photograph without a face

    def frame(t):
        img = background.copy()
        placed = face_box(t)
        if placed is not None:
            _paste(img, head, *placed[1:])
        if SECOND_FACE[0] <= t < SECOND_FACE[1]:
            _paste(img, head, 0.5, 10, 10)
        return img

    path = str(tmp_path_factory.mktemp("face") / "face.mp4")
    write_media(path, DURATION, fps=FPS, size=(W, H), frame_fn=frame)
    chunks = list(iter_frames(path, None, short_side=256))
    return np.concatenate([c.frames for c in chunks]), np.concatenate([c.t for c in chunks])


def make(name, **overrides):
    ex = registry.create(registry.get_spec(name, overrides or None))
    ex.setup()
    ex.begin_item()
    return ex


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_face_boxes_follow_a_moving_face_and_rows_without_a_face_say_so(face_video):
    frames, t = face_video
    assert frames.shape[1:] == (256, 456, 3)
    ex = make("face")
    out = np.concatenate([ex.extract(frames[i:i + 12]) for i in range(0, len(frames), 12)])  # batches cut anywhere
    attrs = ex.attrs()
    assert out.shape == (len(frames), 1286) == (len(t), len(attrs["columns"]))
    assert attrs["columns"][:7] == ["present", "score", "x0", "y0", "x1", "y1", "emb_0"]
    assert attrs["detector"] == "haar" and attrs["rate_hz"] == 4.0 and "blake2b:" in attrs["model"]
    truth = [face_box(float(s)) for s in t]
    here = np.array([b is not None for b in truth])
    assert here.sum() == 15 and (~here).sum() == 5
    ious = [iou(b[0], row[2:6]) for b, row in zip(truth, out) if b is not None]
    assert out[here, 0].tolist() == [1.0] * here.sum() and min(ious) >= 0.5, np.round(ious, 2)
    assert (out[here, 1] > 0).all() and np.isfinite(out[here]).all()
    assert out[~here, 0].tolist() == [0.0] * (~here).sum() and (out[~here, 1] == 0).all()
    assert np.isnan(out[~here, 2:]).all()  # documented: no face -> NaN values, never a missing row

    # the embedding is of the face itself, wherever and however large it is in the frame: close to the encoder's
    # view of the face in the original photograph, far closer than the whole frame is
    x0, y0, x1, y1 = FACE
    side = max(x1 - x0, y1 - y0) * 1.25
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    top, left = round(cy - side / 2), round(cx - side / 2)
    photo = skimage_data.astronaut()[top:top + round(side), left:left + round(side)]
    reference = ex.encoder.extract(_resize(photo, 224, 224)[None])[0]
    assert min(cosine(emb, reference) for emb in out[here, 6:]) > 0.6
    some = np.flatnonzero(here)[::5]
    for emb, frame_emb in zip(out[some, 6:], ex.encoder.extract(frames[some])):
        assert cosine(emb, reference) > cosine(frame_emb, reference) + 0.15


def test_face_fill_zero_and_a_dim_that_does_not_match(face_video):
    frames, t = face_video
    gone = [i for i, s in enumerate(t) if face_box(float(s)) is None][:2]
    ex = make("face", params={"fill": 0})
    out = ex.extract(frames[gone])
    assert out.shape == (2, 1286) and (out == 0).all()
    assert ex.extract(frames[:0]).shape == (0, 1286)
    with pytest.raises(RuntimeError, match="set dim: 1286"):
        make("face", dim=512)


def test_face_with_mtcnn_gives_landmarks_inside_the_box(face_video):
    pytest.importorskip("facenet_pytorch", reason="mtcnn needs `pip install --no-deps facenet-pytorch==2.6.0`")
    frames, t = face_video[0][::2], face_video[1][::2]  # MTCNN is slow on a CPU: every other frame
    ex = make("face", dim=1296, params={"detector": "mtcnn"})
    out = ex.extract(frames)
    cols = ex.attrs()["columns"]
    assert cols[6:8] == ["eye_left_x", "eye_left_y"] and len(cols) == 1296
    truth = [face_box(float(s)) for s in t]
    assert sum(b is None for b in truth) >= 2
    for b, row in zip(truth, out):
        if b is None:
            assert row[0] == 0
            continue
        assert row[0] == 1 and 0.5 < row[1] <= 1.0 and iou(b[0], row[2:6]) >= 0.5
        lm = row[6:16].reshape(5, 2)
        assert ((lm >= row[2:4]) & (lm <= row[4:6])).all()
        assert lm[0, 0] < lm[1, 0] and lm[2, 1] < lm[3, 1]  # eyes left to right, nose above the mouth


# ---- synthetic voice -----------------------------------------------------------------------------------------------
def _resonate(x, fc, bw):
    r, th = math.exp(-math.pi * bw / SR), 2 * math.pi * fc / SR
    return lfilter([1 - r], [1, -2 * r * math.cos(th), r * r], x)


VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))  # formants, Hz


def _voiced(f0: np.ndarray, formants=VOWELS[0], gains=(1.0, 0.6, 0.3)) -> np.ndarray:
    """A glottal pulse train at the given F0 per sample, through vowel formants: a voiced speech sound."""
    cycles = np.floor(np.cumsum(f0) / SR)
    pulses = np.zeros(len(f0))
    pulses[1:][np.diff(cycles) > 0] = 1.0
    source = lfilter([1], [1, -0.95], pulses)
    return sum(g * _resonate(source, fc, 80 + 0.05 * fc) for fc, g in zip(formants, gains))


def babble(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like sound: syllables of 160-280 ms, each a vowel with a noisy consonant onset and its own intonation."""
    rng = np.random.default_rng(seed)
    out, pos = np.zeros(int(seconds * SR)), 0
    while pos < len(out):
        n_syl = int(rng.uniform(0.16, 0.28) * SR)
        n = min(n_syl, len(out) - pos)
        tt = np.arange(n) / SR
        f0 = 140 * (1 + 0.15 * rng.uniform(-1, 1)) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 3) * tt))
        syl = _voiced(f0, VOWELS[rng.integers(len(VOWELS))])
        onset = min(int(0.04 * SR), n)
        syl[:onset] = 0.2 * syl[:onset] + 0.3 * _resonate(rng.normal(size=onset), 4000, 2000)
        out[pos:pos + n] = syl * np.sin(np.pi * np.arange(n) / n_syl) ** 0.7
        pos += n_syl + int(rng.uniform(0.0, 0.06) * SR)
    return 0.3 * out / np.abs(out).max()


def floor(seconds: float, seed: int = 1) -> np.ndarray:
    """Near silence: a noise floor at about -70 dB, as in a quiet recording."""
    return 3e-4 * np.random.default_rng(seed).normal(size=int(seconds * SR))


def test_vad_separates_speech_from_silence_and_music():
    tt = np.arange(int(1.5 * SR)) / SR
    chord = 0.2 * sum(np.sin(2 * np.pi * f * tt) for f in (261.6, 329.6, 392.0))  # C major, held
    wave = np.concatenate([floor(1.0), babble(2.0), floor(1.0), chord]).astype(np.float32)
    ex = make("vad")
    prob, t = ex.extract(wave, SR)
    assert prob.shape == (len(wave) // 512, 1) and len(t) == len(prob)
    np.testing.assert_allclose(np.diff(t), 0.032)
    assert t[0] == pytest.approx(0.016) and ex.attrs()["rate_hz"] == pytest.approx(31.25)
    assert ex.attrs()["columns"] == ["speech_prob"]
    p = prob[:, 0]
    speech, quiet, music = (t > 1.2) & (t < 2.9), (t < 0.9) | ((t > 3.3) & (t < 3.9)), t > 4.2
    assert p[speech].mean() > 0.7 and np.mean(p[speech] > 0.5) > 0.8
    assert p[quiet].max() < 0.2 and p[music].max() < 0.2
    again, _ = ex.extract(wave, SR)  # a new item starts from a fresh state
    np.testing.assert_array_equal(again, prob)
    assert ex.extract(np.zeros(100, np.float32), SR)[0].shape == (0, 1)


def test_pitch_follows_a_known_contour_and_is_nan_where_unvoiced():
    tt = np.arange(2 * SR) / SR
    contour = 110 * 3 ** (tt / 2) * (1 + 0.03 * np.sin(2 * np.pi * 5 * tt))  # 110 -> 330 Hz with vibrato
    voiced = _voiced(contour)
    noise = 0.05 * np.random.default_rng(2).normal(size=SR)
    wave = np.concatenate([floor(0.5), 0.5 * voiced / np.abs(voiced).max(), floor(0.5), noise]).astype(np.float32)
    ex = make("pitch")
    feats, t = ex.extract(wave, SR)
    assert ex.attrs()["columns"] == ["f0_hz", "voicing"] and feats.shape == (len(t), 2)
    assert len(t) == 1 + (len(wave) - 1024) // 160
    np.testing.assert_allclose(np.diff(t), 0.010, atol=1e-9)
    assert t[0] == pytest.approx(0.032)
    f0, voicing = feats[:, 0], feats[:, 1]
    inside = (t > 0.55) & (t < 2.45)  # frames wholly inside the voiced stretch (64 ms frames)
    truth = np.interp(t[inside] - 0.5, tt, contour)
    is_voiced = ~np.isnan(f0[inside])
    assert is_voiced.mean() > 0.95
    err = np.abs(f0[inside][is_voiced] / truth[is_voiced] - 1)
    assert err.max() < 0.02, f"worst F0 error {err.max():.3f}"
    silent = (t < 0.45) | ((t > 2.55) & (t < 2.95))
    assert np.isnan(f0[silent]).all() and (voicing[silent] == 0).all()
    assert np.isnan(f0[t > 3.05]).mean() > 0.9  # white noise has no pitch
