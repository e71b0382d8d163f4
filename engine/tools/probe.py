"""``python -m engine.probe``: a linear probe of a store's features on the Basic-7 primary emotion of each sentence.

It answers "do these features carry the labels?" with the metrics the EmoS paper reports, before anyone trains a
real model. Each sentence segment is one sample: the mean of each modality's rows over the segment's
``[start, end)`` (``WindowDataset(by="segment", pool=True)``), the modalities concatenated and standardised with
the training films' statistics. Segments labelled -1 are left out of training and of every metric.

Split: by film (item id), never a film on both sides. The item ids are sorted, shuffled with ``seed``, and the
first ``round(test_fraction * n)`` go to test, at least one film and at most ``n - 1``.

Model: multinomial logistic regression (``--hidden 0``, the default) or a one-hidden-layer MLP, trained full
batch with Adam and L2 weight decay; ``torch.manual_seed(seed)`` makes runs repeatable.

Metrics, on the test films' labelled segments:

- ``accuracy``; per class ``precision``, ``recall``, ``f1`` and ``support`` (for every class that occurs in the
  test labels or the predictions; a ratio whose denominator is 0 is 0);
- ``macro_f1``: the unweighted mean F1 over those classes; ``weighted_f1``: the F1 of the classes in the test
  labels, weighted by their support;
- ``baseline``: always predicting the most frequent class of the *training* labels (ties: the lower Basic-7
  index), scored on the same test segments;
- ``turning_points`` (streaming films): a true turning point is a segment index ``k`` in ``labels/turning_points``
  (where the primary emotion differs from the previous labelled segment). It counts as **hit** when the predicted
  label sequence also changes at ``k`` (``pred[k] != pred[j]``, ``j`` the previous labelled segment) **and**
  ``pred[k]`` equals the true label. ``accuracy`` = hits / true turning points over all test films.
  Also reported: ``n_true``, ``n_predicted_changes`` (changes of the predicted sequence, on labelled segments),
  ``change_recall`` (true turning points where the prediction changes, whatever the new label) and
  ``change_precision`` (predicted changes that fall on a true turning point).

Examples::

    python -m engine.probe emos_features/stream.zarr
    python -m engine.probe emos_features/stream.zarr --modalities audio,text --seed 3 --json probe.json

>>> from engine.probe import run_probe                                         # doctest: +SKIP
>>> r = run_probe("emos_features/stream.zarr", seed=0)                         # doctest: +SKIP
>>> r["metrics"]["accuracy"], r["baseline"]["accuracy"]                        # doctest: +SKIP
(0.9, 0.3)
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ..labels import BASIC7
from ..reader import StoreReader
from ..torchdata import WindowDataset
from .probe_metrics import classification_metrics, split_items, turning_point_scores

log = logging.getLogger("engine.probe")
SPLIT_MODES = ("film",)


def load_segments(store: StoreReader, modalities: list[str] | None, batch_size: int = 256,
                  num_workers: int = 0) -> dict:
    """Segment-pooled features of every complete item, read through a DataLoader.

    Returns ``{"x": [N, D] float32, "y": [N] int64, "item": [N] str, "segment": [N] int64, "groups": [...],
    "dims": {group: D}}`` in store order (items sorted, segments in time order).
    """
    ds = WindowDataset(store, by="segment", pool=True, groups=modalities)
    if not len(ds):
        raise ValueError(f"{store.path}: no sentence segments in any complete item")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    xs, ys, items, segs = [], [], [], []
    for batch in loader:
        xs.append(torch.cat([batch["features"][g].float() for g in ds.groups], dim=1))
        ys.append(batch["label"].long())
        items += list(batch["item"])
        segs.append(batch["segment"].long())
    x = torch.cat(xs).numpy()
    dims = {g: int(batch["features"][g].shape[1]) for g in ds.groups}
    return {"x": x, "y": torch.cat(ys).numpy(), "item": np.array(items, dtype=object),
            "segment": torch.cat(segs).numpy(), "groups": list(ds.groups), "dims": dims}


def _train(x: np.ndarray, y: np.ndarray, n_classes: int, hidden: int, epochs: int, lr: float,
           weight_decay: float, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    d = x.shape[1]
    model = (torch.nn.Linear(d, n_classes) if hidden <= 0 else
             torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_classes)))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    # One thread: a probe this small is fastest so (threads only contend), and the sums are then done in one
    # order whatever the machine's core count, so a seed gives the same numbers everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):  # full batch: a probe's data fits in memory, and there is no shuffling to seed
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt), yt)
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
    return model


def run_probe(store_path: str | Path, modalities: list[str] | None = None, seed: int = 0,
              test_fraction: float = 0.34, epochs: int = 300, split_by: str = "film", hidden: int = 0,
              lr: float = 1e-2, weight_decay: float = 1e-3) -> dict:
    """Train on the training films, score on the test films; the result as a JSON-ready dict (see the module)."""
    if split_by not in SPLIT_MODES:
        raise ValueError(f"--split-by {split_by!r}: supported: {', '.join(SPLIT_MODES)}")
    store = StoreReader(store_path)
    items = store.items()
    if not items:
        raise ValueError(f"{store_path}: no complete item; run `python -m engine.extract` first")
    data = load_segments(store, modalities)
    train_items, test_items = split_items(items, seed, test_fraction)
    labelled = data["y"] >= 0
    in_test = np.isin(data["item"], test_items)
    tr, te = labelled & ~in_test, labelled & in_test
    if not tr.any() or not te.any():
        raise ValueError(f"{store_path}: no labelled segment in the {'training' if not tr.any() else 'test'} "
                         f"films {train_items if not tr.any() else test_items}; try another --seed")

    x = data["x"].astype(np.float64)
    mean, sd = x[tr].mean(axis=0), x[tr].std(axis=0)
    x = ((x - mean) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32)
    n_classes = len(BASIC7)
    model = _train(x[tr], data["y"][tr], n_classes, hidden, epochs, lr, weight_decay, seed)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()

    metrics = classification_metrics(data["y"][te], pred[te])
    majority = int(np.bincount(data["y"][tr], minlength=n_classes).argmax())
    base = classification_metrics(data["y"][te], np.full(int(te.sum()), majority))
    films = []
    for iid in test_items:
        rows = np.nonzero(data["item"] == iid)[0]
        rows = rows[np.argsort(data["segment"][rows])]
        lab = store.item(iid).labels
        if "turning_points" in lab:
            films.append((data["y"][rows], lab["turning_points"], pred[rows]))
    return {
        "store": str(store_path), "split_by": split_by, "seed": seed, "test_fraction": test_fraction,
        "modalities": data["groups"], "dims": data["dims"],
        "model": "logistic regression" if hidden <= 0 else f"MLP ({hidden} hidden)",
        "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
        "train_items": train_items, "test_items": test_items,
        "n_train": int(tr.sum()), "n_test": int(te.sum()), "n_unlabelled": int((~labelled).sum()),
        "metrics": metrics,
        "baseline": {"majority_class": BASIC7[majority], "accuracy": base["accuracy"],
                     "macro_f1": base["macro_f1"], "weighted_f1": base["weighted_f1"]},
        "turning_points": turning_point_scores(films) if films else None,
    }


def format_report(r: dict) -> str:
    """The probe's result as a readable table."""
    m, b, tp = r["metrics"], r["baseline"], r["turning_points"]
    lines = [
        f"store: {r['store']}   modalities: " + ", ".join(f"{g} ({d}-d)" for g, d in r["dims"].items()),
        f"split by {r['split_by']} (seed {r['seed']}): train {len(r['train_items'])} film(s), "
        f"{r['n_train']} segments | test {len(r['test_items'])} film(s), {r['n_test']} segments: "
        + ", ".join(r["test_items"]),
        f"model: {r['model']}, {r['epochs']} epochs",
        "",
        f"{'Basic-7':<22}{'probe':>8}{'majority':>10}",
        f"{'accuracy':<22}{m['accuracy']:>8.3f}{b['accuracy']:>10.3f}",
        f"{'macro-F1':<22}{m['macro_f1']:>8.3f}{b['macro_f1']:>10.3f}",
        f"{'weighted-F1':<22}{m['weighted_f1']:>8.3f}{b['weighted_f1']:>10.3f}",
        f"(majority class from the training films: {b['majority_class']})",
        "",
        f"{'class':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'support':>9}",
    ]
    for name, c in m["per_class"].items():
        lines.append(f"{name:<10}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}{c['support']:>9d}")
    if tp:
        acc = "n/a" if tp["accuracy"] is None else f"{tp['accuracy']:.3f}"
        lines += ["", f"turning points: accuracy {acc} ({tp['hits']} of {tp['n_true']} true turning points "
                      f"with a predicted change to the right label); {tp['n_predicted_changes']} predicted changes"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="a feature store, <out>/<split>.zarr")
    p.add_argument("--split-by", default="film", choices=SPLIT_MODES, help="what never straddles train and test")
    p.add_argument("--modalities", help="comma-separated store groups (default: all groups of the store)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.34, help="share of the films held out (default 0.34)")
    p.add_argument("--epochs", type=int, default=300, help="full-batch training steps (default 300)")
    p.add_argument("--hidden", type=int, default=0, help="hidden units of an MLP (default 0: logistic regression)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--json", help="also write the result to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    mods = [m.strip() for m in args.modalities.split(",") if m.strip()] if args.modalities else None
    try:
        r = run_probe(args.store, modalities=mods, seed=args.seed, test_fraction=args.test_fraction,
                      epochs=args.epochs, split_by=args.split_by, hidden=args.hidden, lr=args.lr,
                      weight_decay=args.weight_decay)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        log.error("%s", exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        return 2
    print(format_report(r))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"\njson: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
