"""The benchmark's bookkeeping: a ratio carried over from an earlier run (``--keep``) names the run that measured it."""
from __future__ import annotations

import json

from benchmarks.common import Ratio
from benchmarks.run import with_kept


def _ratio(key: str, value: float) -> Ratio:
    return Ratio(key, "a vs b", "a", value, "b", 1.0, "x", value, ">= 1", [f"measured {key}"])


def _write(path, date: str, commit: str, ratios: list[Ratio]) -> None:
    """A results.json as ``benchmarks.run`` writes it (the parts ``with_kept`` reads)."""
    path.write_text(json.dumps({"run": {"mode": "full", "machine": {"date": date, "git_commit": commit}},
                                "details": {r.key: r.to_json() for r in ratios}}))


def test_a_ratio_kept_over_two_runs_still_names_the_run_that_measured_it(tmp_path):
    path = tmp_path / "results.json"
    _write(path, "day 1", "aaa", [_ratio("reader", 0.9), _ratio("films", 1.7)])

    second = with_kept(path, [_ratio("films", 1.8)])  # run 2 measures only the films
    assert [r.key for r in second] == ["reader", "films"]
    assert second[0].notes == ["kept from the run of day 1 (full mode, commit `aaa`)", "measured reader"]
    assert second[1].ratio == 1.8 and second[1].notes == ["measured films"]

    _write(path, "day 2", "bbb", second)
    third = with_kept(path, [_ratio("clips", 2.7)])  # run 3 measures only the clips
    by_key = {r.key: r for r in third}
    assert by_key["reader"].ratio == 0.9
    assert by_key["reader"].notes == ["kept from the run of day 1 (full mode, commit `aaa`)", "measured reader"]
    assert by_key["films"].ratio == 1.8
    assert by_key["films"].notes == ["kept from the run of day 2 (full mode, commit `bbb`)", "measured films"]
    assert by_key["clips"].notes == ["measured clips"]
