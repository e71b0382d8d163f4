"""Generated short-clip data for :mod:`benchmarks.clips`, cached under ``benchmarks/.work``.

- :func:`clip_corpus`: a static checkout in the EmoS release layout (MELD clips ``dia{D}_utt{U}.mp4`` under
  ``English/train_splits``, CH-SIMS v2 clips under ``Chinese/Raw/{video_id}``, Basic-7 and GoEmotions xlsx tables
  and the CH-SIMS meta CSV), media written by ``engine.media.write_media``.
- :func:`packed_store`: a store of many clips written directly with the engine's writer (random features of the
  real shapes, packed as the engine packs clips), plus a ``.npy`` copy of every packed array for the baseline.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from engine.labels import BASIC7, GOEMOTIONS28

from .common import WORK, _complete, _publish

SIZE, FPS, AUDIO_RATE = (160, 120), 25, 44100
BASE = Path("datasets") / "data-final"
EN = ["Oh my God, you're back!", "I don't know what you're talking about.", "That's not fair and you know it.",
      "Wait, so the whole time you were there?", "Okay.", "Could this be any more awkward?",
      "I'm so sorry, I really didn't mean it.", "Are you serious right now?"]
ZH = ["我不想嫁给李茶。", "你这是嫁入豪门啊！", "哈哈，我就猜到了。", "别再说了，我心里有数。", "真的吗？太好了！",
      "我真是受够了。"]
PROBS = [f"goemotion_prob_{name}" for name in (*GOEMOTIONS28, "unsure")]
EN_B7 = ["Dialogue_ID", "Utterance_ID", "Utterance", "basic_corrected", "basic_corrected_conf"]
ZH_B7 = ["video_id", "clip_id", "clip_id_file", "text", "ds_label", "ds_confidence", "confidence_tier"]


# Utterance lengths of the release (its Basic-7 tables: 5,000 MELD-Core and 3,785 CH-SIMS v2 utterances, nearly
# all distinct): percentiles 0, 5, 25, 50, 75, 95, 99, 100 of words per English and characters per Chinese utterance.
# The text encoder's cost grows with length, so the generated sentences follow these, and are all distinct.
LENGTHS = {"en": ([0, 5, 25, 50, 75, 95, 99, 100], [2, 5, 8, 11, 16, 23, 31, 45]),
           "zh": ([0, 5, 25, 50, 75, 95, 99, 100], [3, 7, 11, 16, 21, 31, 38, 50])}
EN_WORDS = sorted({w.strip(",.!?").lower() for s in EN for w in s.split()} | set(
    "yeah well look listen honey guys really just think about the coffee apartment tonight tomorrow ross rachel "
    "monica joey chandler phoebe date job party wedding baby mom dad love hate sorry thanks please maybe never "
    "always something nothing everything somebody nobody going gonna wanna told said know mean feel want need "
    "little big huge whole great good bad funny weird crazy okay sure right wrong here there where when why how "
    "what who with without because but and or so if then than like kind of some any every again still".split()))
ZH_CHARS = sorted({c for s in ZH for c in s if c.isalpha()} | set(
    "我你他她们的是了不在有这个人来去说要就都会没看好想知道吧吗呢啊真太对还怎么样什么时候今天明天家里工作"
    "朋友喜欢觉得可以已经一下现在因为所以如果但是老婆公司钱事情问题自己出手"))


def _sentence(rng: np.random.Generator, lang: str, k: int) -> str:
    """A distinct utterance ``k`` of the release's length distribution (words of English, characters of Chinese)."""
    q, v = LENGTHS[lang]
    n = max(1, int(round(np.interp(rng.uniform(0, 100), q, v))))
    if lang == "en":
        words = [EN_WORDS[i] for i in rng.integers(0, len(EN_WORDS), n)]
        return f"{' '.join(words).capitalize()} {k}{'.?!'[k % 3]}"
    return "".join(ZH_CHARS[i] for i in rng.integers(0, len(ZH_CHARS), n)) + f"{k}{'。？！'[k % 3]}"


def _write_clip(job: tuple[str, float, int]) -> None:
    """One clip: a noisy still picture per clip with a moving bar (so every frame differs), a tone."""
    from engine.media import write_media
    path, duration, seed = job
    w, h = SIZE
    picture = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)

    def frame(t: float) -> np.ndarray:
        img = picture.copy()
        x = int(t / duration * (w - 8))
        img[h // 2 - 4:h // 2 + 4, x:x + 8] = 255
        return img
    freq = 180.0 + 7 * (seed % 40)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_media(path, duration, fps=FPS, size=SIZE, frame_fn=frame, audio_rate=AUDIO_RATE,
                audio_fn=lambda t: (0.25 * np.sin(2 * np.pi * freq * t)).astype(np.float32))


def _xlsx(path: Path, header: list, rows: list) -> None:
    import openpyxl
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet()
    for row in (header, *rows):
        ws.append(row)
    wb.save(path)


def clip_corpus(n_clips: int, zh_share: float = 0.125, seed: int = 0) -> Path:
    """A static checkout of ``n_clips`` clips, MELD first and a ``zh_share`` of CH-SIMS v2; 1.2-3.6 s each
    (2.4 s on average, like MELD's and CH-SIMS's utterances), 160x120, 25 fps, H.264 + 44.1 kHz AAC; every
    utterance distinct, of the release's lengths (:data:`LENGTHS`)."""
    key = {"kind": "clips", "n": n_clips, "zh": zh_share, "size": list(SIZE), "fps": FPS, "seed": seed, "v": 3}
    path = WORK / f"corpus-clips-{n_clips}"
    if _complete(path, key):
        return path
    tmp = WORK / f".tmp-{path.name}-{os.getpid()}"
    rng = np.random.default_rng(seed)
    n_zh = int(round(n_clips * zh_share))
    tables: dict[str, list] = {"en_b7": [], "en_go": [], "zh_b7": [], "zh_go": [], "meta": []}
    jobs = []
    for k in range(n_clips):
        duration = round(float(rng.uniform(1.2, 3.6)) * FPS) / FPS
        label, conf = BASIC7[k % len(BASIC7)], round(float(rng.uniform(0.3, 1.0)), 3)
        votes = (rng.integers(1, 4, len(PROBS)) / 3 * (rng.random(len(PROBS)) < 0.12)).round(4).tolist()  # 1/3..1
        if k < n_clips - n_zh:
            d, u = divmod(k, 8)
            text = _sentence(rng, "en", k)
            rel = BASE / "English" / "train_splits" / f"dia{d}_utt{u}.mp4"
            tables["en_b7"].append([d, u, text, label, conf])
            tables["en_go"].append([d, u, text, *votes])
        else:
            v, c = divmod(k, 8)
            video, clip, text = f"video_{v:04d}", f"{c + 1:04d}", _sentence(rng, "zh", k)
            rel = BASE / "Chinese" / "Raw" / video / f"{clip}.mp4"
            tables["zh_b7"].append([video, clip, clip, text, label, conf, "high" if conf >= 0.5 else "low"])
            tables["zh_go"].append([video, c + 1, text, *votes])  # the release stores these ids as numbers
            tables["meta"].append([video, clip, text])
        jobs.append((str(tmp / rel), duration, seed * 1_000_003 + k))
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_clip, jobs, chunksize=16))
    _xlsx(tmp / BASE / "English" / "basic7" / "basic7.xlsx", EN_B7, tables["en_b7"])
    _xlsx(tmp / BASE / "English" / "goemotion" / "goemotion.xlsx", EN_B7[:3] + PROBS, tables["en_go"])
    if n_zh:
        _xlsx(tmp / BASE / "Chinese" / "basic7" / "basic7.xlsx", ZH_B7, tables["zh_b7"])
        _xlsx(tmp / BASE / "Chinese" / "goemotion" / "goemotion.xlsx", ["video_id", "clip_id", "text"] + PROBS,
              tables["zh_go"])
        with open(tmp / BASE / "ch-simsv2s-meta.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([["video_id", "clip_id", "text"], *tables["meta"]])
    return _publish(tmp, path, key)


# ------------------------------------------------------------------------------------------------ packed store
DIMS = {"visual": 4, "audio": 64, "text": 384}      # frame_stats, logmel, e5_small
RATES = {"visual": 4.0, "audio": 100.0}


def _item_attrs(item_id: str, source: str, duration: float, k: int) -> dict:
    """Attributes shaped like those the engine's worker writes for a clip (sizes of hashes, nested sections)."""
    h = lambda n: f"{(k * 2654435761 + n) % (1 << 64):016x}" * 2  # noqa: E731  32 hex digits
    return {"source": source, "duration_s": duration, "lang": "en", "split": "static", "duration_meta_s": None,
            "groups": list(DIMS), "missing": {}, "fingerprints": {g: h(i) for i, g in enumerate(DIMS)},
            "media": {"size": 40000 + k, "mtime_ns": 1_700_000_000_000_000_000 + k, "blake2b": h(7)},
            "meta_fingerprint": h(9), "warnings": [], "meta": {"corpus": "MELD", "dialogue": k // 8,
                                                                "utterance": k % 8},
            "media_info": {"width": SIZE[0], "height": SIZE[1], "fps": float(FPS), "audio_rate": AUDIO_RATE,
                           "has_video": True, "has_audio": True, "start_s": 0.0, "codec": "h264"},
            "decode": {"backend": "pyav", "precision": "fp32"}, "engine_version": "0", "store_format": 2,
            "written_at": "2026-01-01T00:00:00Z"}


def packed_store(n_clips: int, per_shard: int = 1000, duration_s: float = 2.4, seed: int = 0):
    """``n_clips`` clips of ``duration_s`` packed ``per_shard`` to a shard through ``ShardWriter`` (float32, pooled
    means, one segment and the static split's labels per clip). Returns (store path, npy folder, item ids)."""
    import json

    from engine.pipeline.plan import new_shard_key
    from engine.store import FeatureStore, ItemRows
    key = {"kind": "packed", "n": n_clips, "per_shard": per_shard, "s": duration_s, "seed": seed,
           "v": 2}  # v2: shards with consolidated metadata
    path = WORK / f"clips-store-{n_clips}"
    if _complete(path, key):
        return path / "static.zarr", path / "npy", json.loads((path / "ids.json").read_text())
    tmp = WORK / f".tmp-{path.name}-{os.getpid()}"
    store = FeatureStore(tmp, "static")
    store.create()
    rng = np.random.default_rng(seed)
    n_rows = {g: int(round(duration_s * r)) for g, r in RATES.items()} | {"text": 1}
    times = {g: np.arange(n) / RATES[g] + (0.0125 if g == "audio" else 0.0) for g, n in n_rows.items()
             if g in RATES} | {"text": np.zeros(1)}
    group_attrs = {g: {"extractor": g, "dim": d, "rate_hz": RATES.get(g)} for g, d in DIMS.items()}
    label_attrs = {"primary": {"names": list(BASIC7), "unknown": -1}, "goemotions": {"names": list(GOEMOTIONS28)}}
    ids, npy = [], tmp / "npy"
    npy.mkdir()
    for s, first in enumerate(range(0, n_clips, per_shard)):
        ks = range(first, min(n_clips, first + per_shard))
        feats = {g: rng.standard_normal((len(ks) * n_rows[g], d), dtype=np.float32) for g, d in DIMS.items()}
        rows = []
        for j, k in enumerate(ks):
            iid = f"dia{k // 8}_utt{k % 8}"
            source = f"{BASE}/English/train_splits/{iid}.mp4"
            groups = {g: (feats[g][j * n_rows[g]:(j + 1) * n_rows[g]], times[g]) for g in DIMS}
            labels = {"primary": np.array([k % 7], np.int8), "primary_confidence": np.array([0.8], np.float32),
                      "primary_raw": np.array([BASIC7[k % 7]], dtype=object),
                      "goemotions": rng.random((1, 28), dtype=np.float32),
                      "goemotions_unsure": np.array([0.0], np.float32)}
            rows.append(ItemRows(iid, _item_attrs(iid, source, duration_s, k), groups,
                                 {"start": np.zeros(1), "end": np.array([duration_s]),
                                  "text": np.array([EN[k % len(EN)]], dtype=object)}, labels, label_attrs))
        ids += [r.id for r in rows]
        rows.sort(key=lambda r: r.id)  # the worker writes a shard's members in id order
        w = store.stage(new_shard_key([r.id for r in rows]))
        w.write(rows, group_attrs, DIMS, pooled=True, dtype="float32")
        w.publish()
        for g in DIMS:  # the baseline's copy: the same packed rows, in the shard's order, and their offsets
            np.save(npy / f"{s}.{g}.npy", np.concatenate([r.groups[g][0] for r in rows]))
            np.save(npy / f"{s}.{g}.offsets.npy", np.arange(len(rows) + 1, dtype=np.int64) * n_rows[g])
        (npy / f"{s}.ids.json").write_text(json.dumps([r.id for r in rows]))
    (tmp / "ids.json").write_text(json.dumps(ids))
    return _publish(tmp, path, key) / "static.zarr", path / "npy", ids
