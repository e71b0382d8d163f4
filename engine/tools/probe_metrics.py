"""The probe's scores: the split by film, Basic-7 classification metrics and turning-point accuracy.

Definitions are in :mod:`engine.tools.probe`'s docstring. Pure numpy, so they can be checked by hand.
"""
from __future__ import annotations

import numpy as np

from ..labels import BASIC7, turning_points


def split_items(item_ids: list[str], seed: int = 0, test_fraction: float = 0.34) -> tuple[list[str], list[str]]:
    """Films for training and for test: disjoint, deterministic in ``seed``, neither side empty.

    >>> split_items(["a", "b", "c"], seed=0, test_fraction=0.34)
    (['a', 'b'], ['c'])
    """
    ids = sorted(item_ids)
    if len(ids) < 2:
        raise ValueError(f"a split by film needs at least 2 films, the store has {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = min(len(ids) - 1, max(1, int(round(test_fraction * len(ids)))))
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names=BASIC7) -> dict:
    """Accuracy, macro- and weighted-F1, per-class precision/recall/F1 and the confusion matrix.

    >>> m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    >>> m["accuracy"], round(m["macro_f1"], 4), round(m["weighted_f1"], 4)
    (0.75, 0.7778, 0.75)
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    k = len(names)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    prec = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=(prec + rec) > 0)
    present = (support > 0) | (predicted > 0)
    n = int(support.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / n) if n else 0.0,
        "per_class": {names[c]: {"precision": float(prec[c]), "recall": float(rec[c]), "f1": float(f1[c]),
                                 "support": int(support[c])} for c in range(k) if present[c]},
        "confusion": cm.tolist(),
    }


def turning_point_scores(films: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Turning-point accuracy over films given as ``(true_primary, true_turning_points, predicted)`` per segment.

    See the module docstring for the definition. ``true_primary`` -1 marks unlabelled segments: they are skipped
    on both sides, as :func:`engine.labels.turning_points` (the rule of the stored turning points) skips them.

    >>> s = turning_point_scores([(np.array([0, 0, 3, 3, 5]), np.array([2, 4]), np.array([0, 0, 3, 1, 1]))])
    >>> s["hits"], s["n_true"], s["n_predicted_changes"], s["accuracy"], s["change_recall"]
    (1, 2, 2, 0.5, 0.5)
    """
    hits = n_true = n_pred = changed_at_true = 0
    for true, tps, pred in films:
        true, pred = np.asarray(true), np.asarray(pred).copy()
        pred[true < 0] = -1
        pred_tps = set(turning_points(pred).tolist())
        n_pred += len(pred_tps)
        for k in np.asarray(tps).tolist():
            n_true += 1
            if k in pred_tps:
                changed_at_true += 1
                hits += int(pred[k] == true[k])
    return {"accuracy": hits / n_true if n_true else None, "hits": hits, "n_true": n_true,
            "n_predicted_changes": n_pred,
            "change_recall": changed_at_true / n_true if n_true else None,
            "change_precision": changed_at_true / n_pred if n_pred else None}

