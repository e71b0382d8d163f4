"""openSMILE eGeMAPSv02 low-level descriptors (25 per frame, 10 ms hop): the standard affective feature set."""
from __future__ import annotations

import numpy as np

from kernels.align import frame_centres

from .base import Extractor


class EGeMAPS(Extractor):
    def setup(self) -> None:
        import opensmile
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self.columns = list(self.smile.feature_names)

    def model_id(self) -> str:
        import opensmile
        return f"opensmile {opensmile.__version__} eGeMAPSv02 LLD"

    def attrs(self):
        return {**super().attrs(), "rate_hz": 100.0, "columns": self.columns, "time_is": "frame centre",
                "sample_rate": self.spec.sample_rate}

    def extract(self, wave: np.ndarray, sample_rate: int):
        if len(wave) < sample_rate // 10:
            return np.zeros((0, self.spec.dim), np.float32), np.zeros(0)
        df = self.smile.process_signal(np.asarray(wave, np.float32), sample_rate)
        start = df.index.get_level_values("start").total_seconds().to_numpy()
        end = df.index.get_level_values("end").total_seconds().to_numpy()
        # openSMILE indexes frames by [start, end) on a regular hop; the last one is cut at the signal's end, so
        # times come from the regular framing (the one place frame times are computed), not from each row's end
        hop = float(np.median(np.diff(start))) if len(start) > 1 else 0.01
        win = float(np.median(end - start))
        return df.to_numpy(np.float32), frame_centres(len(df), hop, win, offset_s=float(start[0]))
