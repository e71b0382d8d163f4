"""Shared fixtures: a local Ray started once, and tiny EmoS-shaped corpora the tests generate themselves."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

FAST = "frame_stats,logmel,e5_small"  # real extractors that run in well under a second per film

SHORT_FILMS = {
    "Alpha Film": ("en", "Alpha Film", [("I waited all night.", "Sadness", 1.6), ("And then you came!", "Joy", 1.4),
                                        ("Never again, never.", "Anger", 1.5)]),
    "Beta Film": ("zh", "测试影片", [("那年的雨很大。", "Neutral", 1.5), ("我很想你。", "Sadness", 1.6),
                                   ("你终于回来了！", "Surprise", 1.3)]),
}


def make_corpus(root: Path, films=None, size=(96, 64), fps=12.0) -> Path:
    from engine.datasets.demo import write_film
    for seed, (folder, (lang, title, sentences)) in enumerate((films or SHORT_FILMS).items()):
        write_film(root, folder, lang, title, sentences, fps=fps, size=size, seed=seed)
    return root


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the whole session; engine runs reuse it instead of starting their own."""
    import ray
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                   runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}})
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "emos")


@pytest.fixture()
def run_extract(ray_address, capsys):
    """Run the CLI in-process on the session's Ray; returns (exit code, printed output)."""
    from engine.extract import main

    def run(*args):
        code = main([*map(str, args), "--quiet"])
        out = capsys.readouterr().out
        return code, out
    return run
