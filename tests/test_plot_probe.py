"""The timeline picture (engine.tools.plot) and the linear probe (engine.tools.probe) on a real store.

One generated corpus per module: six short films whose picture colour and tone follow each sentence's emotion
(so the labels are learnable), and one long film (~4:45) with few sentences and tiny frames, extracted once with
the cheap extractors (frame_stats, logmel, e5_small) through the real CLI. The CLIs are reached through their
documented entry points, ``engine.plot`` and ``engine.probe``.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from engine.datasets.demo import write_film
from engine.extract import main as extract_main
from engine.labels import BASIC7
from engine.plot import main as plot_main
from engine.probe import main as probe_main
from engine.reader import StoreReader
from engine.tools.plot import ROW_HEIGHTS_IN, draw_item, plot_item, safe_filename
from engine.tools.plot_data import MAX_BINS, bin_rows, feature_rows, mmss, tick_step
from engine.tools.plot_layers import draw_f0, draw_presence
from engine.tools.probe import run_probe
from engine.tools.probe_metrics import classification_metrics, split_items, turning_point_scores

REPO = Path(__file__).resolve().parent.parent

SHORT = [f"Short Film {i}" for i in range(6)]
LONG = "Long Road"
# what is said follows the emotion too, so no modality contradicts the others
SAYS = {"Anger": "This makes me furious, how dare you!", "Disgust": "That is revolting, it makes me sick.",
        "Fear": "I am scared, something is out there in the dark.", "Joy": "What a wonderful day, I am so happy!",
        "Neutral": "The train leaves at nine from platform four.",
        "Sadness": "I miss her so much, I cannot stop crying.", "Surprise": "Wow, I never expected to see you here!"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("plot_probe")
    root, out = base / "corpus", base / "out"
    for i, folder in enumerate(SHORT):
        # five sentences of five different emotions per film, the films' windows shifted around Basic-7
        emotions = [BASIC7[(2 * i + j) % 7] for j in range(5)]
        sentences = [(SAYS[e], e, 3.0 + 0.2 * j) for j, e in enumerate(emotions)]
        write_film(root, folder, "en", folder, sentences, fps=10.0, size=(64, 48), seed=i)
    long_emotions = ["Neutral", "Sadness", "Sadness", "Fear", "Anger", "Joy", "Joy", "Surprise", "Disgust", "Neutral"]
    write_film(root, LONG, "en", LONG, [(SAYS[e], e, 28.0) for e in long_emotions],
               fps=5.0, size=(64, 48), seed=9)
    rc = extract_main(["--split", "stream", "--root", str(root), "--out", str(out),
                       "--extractors", "frame_stats,logmel,e5_small", "--workers", "1", "--quiet"])
    assert rc == 0
    return out / "stream.zarr"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------------- plot
@pytest.mark.parametrize("item", [SHORT[0], LONG])
def test_plot_writes_a_readable_png(store, item, tmp_path):
    reader = StoreReader(store)
    assert reader.item(LONG).duration_s > 240
    out = plot_item(reader, item, tmp_path / "timeline.png")
    assert out == tmp_path / "timeline.png"
    w, h = png_size(out)
    assert 1000 <= w <= 2000 and 300 <= h <= 1200  # one wide figure, whatever the film's length
    assert 20_000 < out.stat().st_size < 2_000_000


def test_plot_cli_default_name_is_file_safe(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plot_main([str(store), "--item", SHORT[1]]) == 0
    assert png_size(tmp_path / "Short_Film_1.png")[0] > 0
    assert plot_main([str(store), "--item", "no such film"]) == 2


def test_documented_entry_points_run_as_modules(store):
    for module, args in (("engine.plot", ["--item", "no such film"]), ("engine.probe", ["--modalities", "nope"])):
        r = subprocess.run([sys.executable, "-m", module, str(store), *args], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, (module, r.stderr)  # main() ran and refused the bad argument


def test_face_and_pitch_rows_are_found_by_columns_and_drawn(tmp_path):
    t = np.arange(0.0, 20.0, 0.1)
    unvoiced = (t % 4 >= 3) | (np.arange(len(t)) == 5)
    f0 = np.where(t % 4 >= 3, 0.0, 150 + 20 * np.sin(t))  # a tracker's 0 Hz means unvoiced, as NaN does
    f0[5] = np.nan
    groups = {
        "cam": SimpleNamespace(t=t, features=np.column_stack([t % 8 < 5, t]), attrs={"columns": ["present_p", "x"]}),
        "voice": SimpleNamespace(t=t, features=np.column_stack([t, f0]), attrs={"columns": ["energy", "f0_hz"]}),
        # called "face", but without a leading presence column: the columns decide, not the name
        "face": SimpleNamespace(t=t, features=np.ones((len(t), 2)), attrs={"columns": ["x", "present"]}),
    }
    rows = feature_rows(groups)
    assert [(r.kind, r.group) for r in rows] == [("presence", "cam"), ("f0", "voice")]
    line = draw_f0(Figure().add_subplot(), t, rows[1].values, "voice")
    assert np.array_equal(np.isnan(line.get_ydata()), unvoiced)  # gaps exactly where unvoiced
    band = draw_presence(Figure().add_subplot(), t, rows[0].values, np.linspace(0, 20, 21), "cam").get_array()
    assert band.shape == (1, 20) and band[0, 1] == 1 and band[0, 6] == 0

    item = SimpleNamespace(id="Tiny", duration_s=20.0, labels={}, groups=groups,
                           segments={"start": np.array([1.0]), "end": np.array([5.0])})
    with_rows = png_size(draw_item(item, tmp_path / "rows.png", dpi=100))[1]
    for g in groups.values():
        g.attrs = {"columns": ["a", "b"]}  # the same heatmaps, no emotion-feature rows
    without = png_size(draw_item(item, tmp_path / "plain.png", dpi=100))[1]
    assert abs(with_rows - without - 100 * (ROW_HEIGHTS_IN["presence"] + ROW_HEIGHTS_IN["f0"])) <= 1


def test_long_films_are_binned_and_ticked_for_reading():
    t = np.arange(0, 640, 0.01)  # a 640 s film's log-mel rows
    x = np.random.default_rng(0).normal(size=(len(t), 3))
    img = bin_rows(t, x, np.linspace(0, 640, MAX_BINS + 1))
    assert img.shape == (MAX_BINS, 3) and not np.isnan(img).any()
    # a sparse modality (one row per sentence) stays visible between its rows, a long gap stays empty
    sparse = bin_rows(np.array([0.0, 4.0, 8.0, 30.0]), np.eye(4), np.linspace(0, 40, 41))
    assert (sparse[5] == [0, 1, 0, 0]).all() and np.isnan(sparse[20]).all()
    assert tick_step(30) <= 5 and 30 <= tick_step(640) <= 60
    assert mmss(0) == "00:00" and mmss(639.6) == "10:40"
    assert safe_filename("../Rain / Letters") == "Rain_Letters"


# --------------------------------------------------------------------------------------------------- probe
def test_probe_beats_the_majority_class(store):
    r = run_probe(store, seed=0)
    m, b = r["metrics"], r["baseline"]
    assert r["n_test"] > 0 and r["n_train"] > 0
    assert m["accuracy"] >= b["accuracy"] + 0.3, (m, b)
    assert m["macro_f1"] > b["macro_f1"]
    assert set(m["per_class"]) <= set(BASIC7)
    tp = r["turning_points"]
    assert tp["n_true"] > 0 and 0.0 <= tp["accuracy"] <= 1.0


def test_probe_is_deterministic_for_a_seed(store):
    a = run_probe(store, modalities=["visual", "audio"], seed=3, epochs=100)
    b = run_probe(store, modalities=["visual", "audio"], seed=3, epochs=100)
    assert a == b
    assert a["modalities"] == ["visual", "audio"]


def test_probe_never_splits_a_film(store):
    items = StoreReader(store).items()
    for seed in range(4):
        r = run_probe(store, seed=seed, epochs=20)
        train, test = set(r["train_items"]), set(r["test_items"])
        assert not train & test and train | test == set(items) and test
    assert split_items(["a", "b"], seed=1, test_fraction=0.9) in ((["a"], ["b"]), (["b"], ["a"]))
    with pytest.raises(ValueError):
        split_items(["only"])


def test_probe_cli_writes_json(store, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert probe_main([str(store), "--split-by", "film", "--modalities", "visual,audio,text", "--seed", "0",
                       "--test-fraction", "0.34", "--epochs", "50", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert {"metrics", "baseline", "turning_points", "train_items", "test_items"} <= set(r)
    assert "macro-F1" in capsys.readouterr().out
    assert probe_main([str(store), "--modalities", "nope"]) == 2


def test_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert m["accuracy"] == 0.75
    assert m["per_class"]["Anger"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert "Joy" not in m["per_class"]  # absent from labels and predictions
    # true  0 0 3 3 5 ; turning points at 2 (0->3) and 4 (3->5)
    # pred  0 0 3 1 1 ; changes at 2 (right label: hit) and 3 (no true turning point); none at 4
    s = turning_point_scores([(np.array([0, 0, 3, 3, 5]), np.array([2, 4]), np.array([0, 0, 3, 1, 1]))])
    assert (s["hits"], s["n_true"], s["n_predicted_changes"]) == (1, 2, 2)
    assert s["accuracy"] == 0.5 and s["change_recall"] == 0.5 and s["change_precision"] == 0.5
    # a change at the right index to the wrong label is not a hit; unlabelled segments are skipped on both sides
    s = turning_point_scores([(np.array([4, -1, 5]), np.array([2]), np.array([4, 0, 6]))])
    assert (s["hits"], s["n_predicted_changes"], s["change_recall"]) == (0, 1, 1.0)
