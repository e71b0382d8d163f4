"""One face per frame: presence, detection score, box, landmarks, and an embedding of the aligned face crop.

A row exists for every frame. Columns (the group's ``columns`` attribute names them all):

- ``present``: 1 when a face was found, else 0;
- ``score``: the detector's confidence for that face (0 without a face). Its scale depends on the detector (the
  ``score_is`` attribute says which): MTCNN gives a probability, an OpenCV cascade the sum of its last stage;
- ``x0, y0, x1, y1``: the box corners as fractions of the upright frame's width and height, clipped to ``[0, 1]``;
- landmarks, when the detector gives them: ``<point>_x, <point>_y`` as fractions, like the box;
- ``emb_0 ...``: the face crop through a visual encoder (``params.encoder``, a stateless visual extractor:
  ``efficientnet_lite0`` by default, ``hf_vision`` for any Hugging Face image model).

Without a face, ``present`` and ``score`` are 0 and every other value is NaN (``params.fill: 0`` writes zeros
instead, for code that cannot mask). With several faces the largest box is taken (ties: the higher score); the
choice is made per frame, with no tracking, so frames of several items may share a batch.

The crop is a square around the box centre, ``crop_margin`` larger than the box's long side, turned so that the
eyes are level when the detector finds eyes, then scaled to ``crop_size`` pixels.

Detectors (``params.detector``):

- ``haar`` (default): OpenCV's frontal-face cascade ``haarcascade_frontalface_alt2.xml``, which ships inside
  ``opencv-python-headless`` 4.x (5.x dropped the cascades). CPU, upright frontal faces; no landmarks.
- ``mtcnn``: the MTCNN weights inside ``facenet-pytorch``; five landmarks, better on tilted heads, and it runs on
  the GPU. facenet-pytorch pins torch, numpy and Pillow far below this project's, so it is not a dependency: install
  it with ``pip install --no-deps facenet-pytorch==2.6.0``. Its landmarks add 10 columns, so ``dim`` grows by 10.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from kernels.image import crop_squares, to_float

from .base import Extractor, cpu_threads, file_digest

BOX_COLUMNS = ("present", "score", "x0", "y0", "x1", "y1")


@dataclass
class Detections:
    """The faces found in one frame, in pixels of that frame."""

    boxes: np.ndarray             # [k, 4] x0, y0, x1, y1
    scores: np.ndarray            # [k]
    landmarks: np.ndarray | None  # [k, L, 2] x, y; None when the detector gives none


class HaarDetector:
    """OpenCV cascade (``opencv-python-headless`` 4.x). Boxes are upright squares; no landmarks."""

    landmarks: tuple[str, ...] = ()
    score_is = "OpenCV cascade last-stage sum (unbounded; larger is more certain)"

    def __init__(self, params: dict, device: str):
        import cv2
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError(f"face: OpenCV {cv2.__version__} has no Haar cascades (5.x dropped them); install "
                               f"opencv-python-headless 4.x (pip install 'opencv-python-headless>=4.10,<5')")
        self.path = os.path.join(cv2.data.haarcascades, params.get("cascade", "haarcascade_frontalface_alt2.xml"))
        self.cascade = cv2.CascadeClassifier(self.path)
        if self.cascade.empty():
            raise RuntimeError(f"face: cannot load the cascade {self.path}; set params.cascade to a file in "
                               f"{cv2.data.haarcascades}")
        self.scale_factor = float(params.get("scale_factor", 1.1))
        self.min_neighbors = int(params.get("min_neighbors", 5))
        self.min_face = float(params.get("min_face", 0.08))
        cv2.setNumThreads(cpu_threads())  # the worker's model share, not every core
        self._cv2 = cv2
        self.model_id = f"opencv {cv2.__version__} {os.path.basename(self.path)} blake2b:{file_digest(self.path)}"

    def detect(self, frames: np.ndarray) -> list[Detections]:
        cv2, out = self._cv2, []
        for frame in frames:
            grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            side = max(1, round(self.min_face * min(grey.shape)))
            boxes, _levels, weights = self.cascade.detectMultiScale3(
                grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side),
                outputRejectLevels=True)
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> corners
            out.append(Detections(boxes, np.asarray(weights, np.float32).reshape(-1), None))
        return out


class MTCNNDetector:
    """MTCNN from ``facenet-pytorch`` (installed without its dependencies; see the module docstring)."""

    landmarks = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")  # left/right as seen in the image
    score_is = "MTCNN face probability (0-1)"

    def __init__(self, params: dict, device: str):
        try:
            import facenet_pytorch
            from facenet_pytorch.models.mtcnn import MTCNN
        except ImportError as exc:
            raise RuntimeError(
                f"face: detector 'mtcnn' needs the MTCNN weights of facenet-pytorch, which is not importable "
                f"({exc}); install it with `pip install --no-deps facenet-pytorch==2.6.0` (its own pins on torch, "
                f"numpy and Pillow are too old to install it with its dependencies), or use detector: haar") from None
        self.net = MTCNN(keep_all=True, device=device, min_face_size=int(params.get("min_face_px", 20)))
        folder = os.path.join(os.path.dirname(facenet_pytorch.__file__), "data")
        digest = "+".join(file_digest(os.path.join(folder, f"{n}.pt"), 8) for n in ("pnet", "rnet", "onet"))
        self.model_id = f"facenet-pytorch MTCNN blake2b:{digest}"

    def detect(self, frames: np.ndarray) -> list[Detections]:
        boxes, probs, points = self.net.detect(frames, landmarks=True)
        out = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None:
                out.append(Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                      np.zeros((0, len(self.landmarks), 2), np.float32)))
            else:
                out.append(Detections(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1),
                                      np.asarray(lm, np.float32).reshape(-1, len(self.landmarks), 2)))
        return out


DETECTORS = {"haar": HaarDetector, "mtcnn": MTCNNDetector}


class Face(Extractor):
    """See the module docstring. One row per frame, ``6 + 2 * landmarks + encoder dim`` columns."""

    stateful = False  # the largest face of each frame: no state across frames

    def setup(self) -> None:
        from . import create, get_spec

        p = self.spec.params
        name = p.get("detector", "haar")
        if name not in DETECTORS:
            raise ValueError(f"face: unknown detector {name!r}; known: {', '.join(DETECTORS)}")
        self.detector = DETECTORS[name](p, self.device)
        self._detector_name = name
        enc_spec = get_spec(p.get("encoder", "efficientnet_lite0"), {"params": dict(p.get("encoder_params") or {})})
        if enc_spec.modality != "visual":
            raise ValueError(f"face: encoder {enc_spec.name!r} is a {enc_spec.modality} extractor; it must be visual")
        self.encoder = create(enc_spec, device=self.device, precision=self.precision)
        if self.encoder.stateful:
            raise ValueError(f"face: encoder {enc_spec.name!r} keeps state across frames; use an image encoder "
                             f"such as efficientnet_lite0 or hf_vision")
        self.encoder.setup()
        lm = [f"{point}_{axis}" for point in self.detector.landmarks for axis in "xy"]
        self.columns = [*BOX_COLUMNS, *lm, *(f"emb_{i}" for i in range(enc_spec.dim))]
        if len(self.columns) != self.spec.dim:
            raise RuntimeError(
                f"face: detector {name!r} with encoder {enc_spec.name!r} gives {len(self.columns)} columns "
                f"(6 + {len(lm)} landmark + {enc_spec.dim} embedding) but configs/extractors/face.yaml says "
                f"dim: {self.spec.dim}; set dim: {len(self.columns)} there or in a --config file")
        self._fill = self._fill_value()

    def _fill_value(self) -> float:
        fill = str(self.spec.params.get("fill", "nan")).lower()
        if fill not in ("nan", "0"):
            raise ValueError(f"face: params.fill must be nan or 0, not {fill!r}")
        return math.nan if fill == "nan" else 0.0

    def model_id(self) -> str:
        if not hasattr(self, "detector"):
            return "?"
        return f"{self.detector.model_id}; crops through {self.encoder.model_id()}"

    def attrs(self):
        p = self.spec.params
        return {**super().attrs(), "columns": list(getattr(self, "columns", [])),
                "detector": getattr(self, "_detector_name", p.get("detector", "haar")),
                "landmarks": list(getattr(getattr(self, "detector", None), "landmarks", ())),
                "score_is": getattr(getattr(self, "detector", None), "score_is", None),
                "selection": "largest box per frame", "box_is": "fractions of the upright frame's width and height",
                "no_face": "present 0, score 0, other values " + ("NaN" if math.isnan(self._fill_value()) else "0"),
                "encoder": p.get("encoder", "efficientnet_lite0"), "crop_size": int(p.get("crop_size", 224)),
                "crop_margin": float(p.get("crop_margin", 0.25))}

    def extract(self, frames) -> np.ndarray:
        frames = frames if isinstance(frames, np.ndarray) else frames.cpu().numpy()  # a GPU decoder's tensor
        n, h, w = frames.shape[:3]
        n_lm = len(self.detector.landmarks)
        out = np.full((n, self.spec.dim), self._fill, np.float32)
        out[:, :2] = 0.0
        if n == 0:
            return out
        rows, boxes, angles = [], [], []
        for i, det in enumerate(self.detector.detect(frames)):
            if not len(det.scores):
                continue
            area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
            k = int(np.lexsort((-det.scores, -area))[0])  # the largest, then the most certain
            box = det.boxes[k]
            out[i, :6] = (1.0, det.scores[k], *np.clip(box / (w, h, w, h), 0.0, 1.0))
            angle = 0.0
            if det.landmarks is not None and n_lm:
                out[i, 6:6 + 2 * n_lm] = (det.landmarks[k] / (w, h)).reshape(-1)
                (lx, ly), (rx, ry) = det.landmarks[k][:2]  # the two eyes come first
                angle = math.atan2(ry - ly, rx - lx)
            rows.append(i)
            boxes.append(box)
            angles.append(angle)
        if rows:
            out[rows, 6 + 2 * n_lm:] = self.encoder.extract(self._crops(frames, rows, np.stack(boxes), angles))
        return out

    @torch.inference_mode()
    def _crops(self, frames: np.ndarray, rows: list[int], boxes: np.ndarray, angles: list[float]) -> np.ndarray:
        """uint8 ``[K, S, S, 3]`` face crops, the input every visual extractor takes."""
        p = self.spec.params
        size, margin = int(p.get("crop_size", 224)), float(p.get("crop_margin", 0.25))
        x = to_float(torch.from_numpy(frames[rows]).to(self.device))
        b = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        side = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1.0 + margin)
        crops = crop_squares(x, torch.arange(len(rows), device=self.device), (b[:, :2] + b[:, 2:]) / 2, side,
                             torch.as_tensor(angles, dtype=torch.float32, device=self.device), size)
        return crops.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
