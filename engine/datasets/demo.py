"""The embedded demo: a small corpus in the exact layout of the EmoS streaming release, generated on first use.

Three monologue "films" (two English, one Chinese) of 24-36 s: real H.264 + AAC mp4 files, sentence-level
timestamps, and emotion annotations in the release's formats (fenced JSON, "MM:SS-MM:SS" ranges, "Anger/愤怒"
style labels, decorated GoEmotions names). The picture's colour and the voice-like tone follow each sentence's
emotion, so the features really carry the labels (the probe can learn them). Everything here is generated.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..media import write_media
from . import register_dataset
from .emos_stream import STREAM_DIR, EmosStream

log = logging.getLogger(__name__)
DEMO_VERSION = 1

# emotion -> (RGB colour of the scene, pitch of the voice-like tone in Hz)
_LOOK = {
    "Anger": ((200, 40, 30), 330.0), "Disgust": ((90, 120, 40), 250.0), "Fear": ((60, 40, 110), 520.0),
    "Joy": ((240, 200, 60), 440.0), "Neutral": ((128, 128, 128), 200.0), "Sadness": ((40, 70, 160), 160.0),
    "Surprise": ((240, 120, 200), 600.0),
}
_ZH = {"Anger": "愤怒", "Disgust": "厌恶", "Fear": "恐惧", "Joy": "喜悦", "Neutral": "自然", "Sadness": "伤心",
       "Surprise": "惊讶"}
_SECONDARY = {"Anger": ["anger", "annoyance"], "Disgust": ["disgust", "disapproval"], "Fear": ["fear", "nervousness"],
              "Joy": ["joy", "excitement"], "Neutral": ["neutral", "realization 💡"],
              "Sadness": ["sadness", "grief", "determination"], "Surprise": ["surprise", "confusion"]}

# (sentence, emotion, seconds). Each film has several sentences and at least one emotion change.
FILMS = {
    "Harbor Lights": ("en", "Harbor Lights", [
        ("I kept the lamp burning every night you were gone.", "Sadness", 4.2),
        ("Nobody came down to the water to ask me why.", "Sadness", 3.6),
        ("And then this morning a sail showed on the horizon.", "Surprise", 3.4),
        ("You are home, you are really home!", "Joy", 3.0),
        ("Come inside, the kettle is still warm.", "Joy", 3.4),
        ("But do not ever leave without a word again.", "Anger", 3.8),
        ("Promise me that, here, on this step.", "Neutral", 3.6),
    ]),
    "Night Train": ("en", "Night Train", [
        ("The ticket says nine forty, platform four.", "Neutral", 3.2),
        ("They told me the line was closed years ago.", "Fear", 3.4),
        ("Then who keeps ringing that bell in the dark?", "Fear", 3.6),
        ("You think this is a joke? Open the door!", "Anger", 3.4),
        ("Fine. I will walk along the rails myself.", "Disgust", 3.2),
        ("Wait, there are lights coming up the valley.", "Surprise", 3.0),
    ]),
    "Rain Letters": ("zh", "雨中的信", [
        ("那年夏天的雨下了整整一个月。", "Neutral", 3.6),
        ("我每天都在窗边等你的信。", "Sadness", 3.8),
        ("邮差终于敲门的时候，我的手都在发抖。", "Surprise", 4.0),
        ("信里只有一句话：我很快就回来。", "Joy", 4.0),
        ("可是你再也没有回来。", "Sadness", 3.6),
        ("我不恨你，我只是恨这场雨。", "Anger", 4.0),
        ("现在雨停了，我也该走了。", "Neutral", 3.4),
        ("谢谢你，让我等过一个人。", "Joy", 3.6),
    ]),
}


def default_demo_dir() -> Path:
    base = os.environ.get("EMOS_ENGINE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "emos-engine")
    return Path(base) / f"demo-v{DEMO_VERSION}"


def _mmss(t: float) -> str:
    t = int(t)
    return f"{t // 60:02d}:{t % 60:02d}"


def write_film(root: Path, folder: str, lang: str, title: str, sentences: list[tuple[str, str, float]],
               fps: float = 25.0, size: tuple[int, int] = (320, 240), gap_s: float = 0.4, seed: int = 0,
               media: bool = True) -> Path:
    """Write one film (mp4, timestamps JSON, fenced emotion JSON) under ``root``; returns the film folder."""
    rng = np.random.default_rng(seed)
    film_dir = root / STREAM_DIR / folder
    film_dir.mkdir(parents=True, exist_ok=True)
    segs, t = [], 0.3
    for k, (text, emo, dur) in enumerate(sentences):
        segs.append({"index": k + 1, "start": round(t, 2), "end": round(t + dur, 2), "text": text,
                     "filename": f"segment{k + 1:03d}.mp4", "emotion": emo})
        t += dur + gap_s
    duration = round(t + 0.3, 2)
    emotion_at = lambda x: next((s["emotion"] for s in segs if x < s["end"] + gap_s), segs[-1]["emotion"])  # noqa

    if media:
        w, h = size
        noise = rng.integers(-12, 12, size=(h, w, 3))

        def frame(tt: float) -> np.ndarray:
            colour = np.array(_LOOK[emotion_at(tt)][0])
            img = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
            x = int((tt / duration) * (w - 16))  # a bar that moves with time: alignment made visible
            img[h // 2 - 8:h // 2 + 8, x:x + 16] = 255
            return img

        def voice(tt: np.ndarray) -> np.ndarray:
            out = np.zeros_like(tt, dtype=np.float32)
            for s in segs:
                m = (tt >= s["start"]) & (tt < s["end"])
                f0 = _LOOK[s["emotion"]][1]
                vib = 1 + 0.02 * np.sin(2 * np.pi * 5 * tt[m])
                out[m] = 0.25 * np.sin(2 * np.pi * f0 * vib * tt[m]) + 0.08 * np.sin(4 * np.pi * f0 * tt[m])
            return out + rng.normal(0, 0.01, size=tt.shape).astype(np.float32)

        write_media(str(film_dir / f"{folder}.mp4"), duration, fps=fps, size=size, frame_fn=frame,
                    audio_fn=voice, audio_rate=44100)

    meta = {"lang": lang, "film": title, "source_rel": f"{title} (full)/{title} (full).mp4",
            "t_start_global": 12.5, "t_end_global": round(12.5 + duration, 2), "duration": duration,
            "clip": f"{title}.mp4",
            "segments": [{k: v for k, v in s.items() if k != "emotion"} for s in segs]}
    (film_dir / "sentence_level_timestamps.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2),
                                                             encoding="utf-8")
    # utterances: runs of sentences with one emotion, whole-second "MM:SS-MM:SS" ranges as in the release
    utts, k = [], 0
    while k < len(segs):
        j = k
        while j + 1 < len(segs) and segs[j + 1]["emotion"] == segs[k]["emotion"]:
            j += 1
        emo = segs[k]["emotion"]
        text = " ".join(s["text"] for s in segs[k:j + 1])
        utts.append({
            "timestamp_range": f"{_mmss(segs[k]['start'])}-{_mmss(segs[j]['end'])}",
            "speaker_guess": "Narrator",
            "transcript_zh": text if lang == "zh" else "",
            "transcript_en": text if lang == "en" else "",
            "emotion_primary": f"{emo}/{_ZH[emo]}" if lang == "zh" or k % 2 else emo,
            "emotion_secondary": _SECONDARY[emo],
            "intensity": int(1 + (k * 7 + len(text)) % 5),
            "audio_cues": "generated tone", "visual_cues": "generated colour", "evidence": "demo",
        })
        k = j + 1
    emotion = {"summary": f"Demo monologue '{title}'.",
               "overall_emotion_trend": {"dominant": utts[0]["emotion_primary"], "trajectory": "generated"},
               "utterances": utts}
    (film_dir / f"{folder}.emotion.json").write_text(
        "```json\n" + json.dumps(emotion, ensure_ascii=False, indent=2) + "\n```\n", encoding="utf-8")
    return film_dir


def ensure_demo(path: Path | None = None) -> Path:
    """The demo corpus root, generated once (atomically) and reused afterwards."""
    root = Path(path) if path else default_demo_dir()
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        for seed, (folder, (lang, title, sentences)) in enumerate(FILMS.items()):
            write_film(tmp, folder, lang, title, sentences, seed=seed)
        (tmp / ".complete").write_text(str(DEMO_VERSION))
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
        log.info("generated the demo corpus at %s", root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@register_dataset
class Demo(EmosStream):
    """The embedded demo: three short films in the layout of the EmoS streaming release, generated on first use.

    ``--split stream`` without ``--root`` reads it too (into ``stream.zarr``), as the README's first command does.
    """

    name = "demo"

    def default_root(self) -> Path:
        return ensure_demo()
