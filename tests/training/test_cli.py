"""The training CLI's answers to a user's mistakes: one line on stderr, exit code 2, no
traceback, and before TensorFlow loads (these tests run where importing it fails)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.no_tensorflow import env_without_tensorflow
from training.config import PRESET_SUMMARIES, PRESETS, TrainConfig
from training.run_folder import FINISHED, RunFolderError, prepare


def cli(tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = env_without_tensorflow(tmp_path / "no-tf", XDG_CACHE_HOME=str(tmp_path / "cache"), **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]


def finished_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in FINISHED:
        (folder / name).write_text("{}")
    return folder


def test_every_preset_has_a_summary() -> None:
    assert list(PRESET_SUMMARIES) == list(PRESETS)


@pytest.mark.parametrize("args", [pytest.param(["--help"], id="top"), pytest.param(["train", "--help"], id="train")])
def test_help_lists_the_presets(tmp_path: Path, args: list[str]) -> None:
    done = cli(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    for name, summary in PRESET_SUMMARIES.items():
        assert f"  {name}" in done.stdout and summary in done.stdout


def test_wrong_preset_is_reported_before_tensorflow(tmp_path: Path) -> None:
    done = cli(tmp_path, "train", "--preset", "cpu99", "--out", str(tmp_path / "run"))
    assert_one_line_error(done, "cpu99", "cpu88")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_folder_that_holds_a_run(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    done = cli(tmp_path, "train", "--preset", "tutorial-modern", "--out", str(run))
    assert_one_line_error(done, str(run), "--force")
    assert sorted(p.name for p in run.iterdir()) == sorted(FINISHED)


def test_force_replaces_a_run_and_an_empty_folder_is_used(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run")
    with pytest.raises(RunFolderError, match="--force"):
        prepare(run)
    prepare(run, force=True)
    assert run.is_dir() and not any(run.iterdir())
    prepare(run)  # empty: fine
    with pytest.raises(RunFolderError, match="not a folder"):
        prepare(Path(__file__))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        pytest.param("missing", ["does not exist"], id="missing-run"),
        pytest.param("unfinished", ["not a finished run", "model.weights.h5"], id="unfinished-run"),
        pytest.param("existing-out", ["already exists"], id="existing-destination"),
    ],
)
def test_export_mistakes(tmp_path: Path, case: str, words: list[str]) -> None:
    run, out = tmp_path / "run", tmp_path / "models" / "cifar10" / "1"
    if case == "unfinished":
        run.mkdir()
        (run / "config.json").write_text("{}")
    elif case == "existing-out":
        finished_run(run)
        out.mkdir(parents=True)
    done = cli(tmp_path, "export", str(run), "--out", str(out))
    assert_one_line_error(done, *words)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: None, id="missing"),
        pytest.param(lambda p: p.mkdir(parents=True), id="no-version"),
        pytest.param(lambda p: (p / "3").mkdir(parents=True), id="version-without-savedmodel"),
    ],
)
def test_evaluate_a_missing_model(tmp_path: Path, make) -> None:
    model = tmp_path / "models" / "cifar10"
    make(model)
    done = cli(tmp_path, "evaluate", str(model))
    assert_one_line_error(done, str(model))


def test_archive_a_folder_that_is_not_a_savedmodel(tmp_path: Path) -> None:
    done = cli(tmp_path, "archive", str(tmp_path))
    assert_one_line_error(done, "saved_model.pb")


def test_seed_list_mistakes(tmp_path: Path) -> None:
    done = cli(tmp_path, "train", "--preset", "airbench-cpu", "--seeds", "a-b", "--out", str(tmp_path / "run"))
    assert_one_line_error(done, "--seeds")
    done = cli(tmp_path, "train", "--preset", "cpu88", "--seeds", "0-3", "--out", str(tmp_path / "run"))
    assert_one_line_error(done, "airbench recipe on JAX only")


def test_seed_lists_need_the_jax_device_loop(tmp_path: Path) -> None:
    # With another backend airbench trains through Keras's fit, one seed per run.
    args = ["train", "--preset", "airbench-cpu", "--seeds", "0-3", "--out", str(tmp_path / "run")]
    done = cli(tmp_path, *args, KERAS_BACKEND="tensorflow")
    assert_one_line_error(done, "KERAS_BACKEND=tensorflow")


def test_every_config_field_is_a_flag_with_its_comment_as_help(tmp_path: Path) -> None:
    from training.flags import NOT_FLAGS, field_comments

    help_text = " ".join(cli(tmp_path, "train", "--help").stdout.split())
    comments = field_comments()
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_FLAGS:
            continue
        assert f"--{field.name.replace('_', '-')}" in help_text, field.name
        assert comments[field.name] and " ".join(comments[field.name].split()) in help_text, field.name


@pytest.mark.parametrize(
    "field", [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("preset", "notes")]
)
def test_every_config_field_reaches_the_config(field: str) -> None:
    from training.cli import _parser, _train_config

    default = getattr(TrainConfig(), field)
    value: object
    if isinstance(default, bool):
        value, flag = not default, [f"--{'' if not default else 'no-'}{field.replace('_', '-')}"]
    elif isinstance(default, tuple):
        value = (16, 32, 48)
        flag = [f"--{field.replace('_', '-')}", "16,32,48"]
    elif field in ("arch", "optimizer", "stem", "data_format"):
        value = {"arch": "tutorial", "optimizer": "adam", "stem": "whiten", "data_format": "channels_first"}[field]
        flag = [f"--{field.replace('_', '-')}", str(value)]
    elif isinstance(default, str):
        value, flag = "elsewhere.tar.gz", [f"--{field.replace('_', '-')}", "elsewhere.tar.gz"]
    else:
        value = 7
        flag = [f"--{field.replace('_', '-')}", "7"]
    cfg = _train_config(_parser().parse_args(["train", *flag, "--out", "x"]))
    assert getattr(cfg, field) == value
    assert cfg.replace(**{field: default}) == TrainConfig()  # nothing else moved


def test_lr_warmup_is_the_learning_rate_ramp_and_the_airbench_compile_run_is_separate() -> None:
    from training.cli import _parser

    args = _parser().parse_args(["train", "--lr-warmup", "0.1", "--no-compile-run", "--out", "x"])
    assert args.lr_warmup == 0.1 and args.no_compile_run is True
    # The compile run's old flag still parses (job scripts); the ramp's old flag does not.
    assert _parser().parse_args(["train", "--no-warmup-run", "--out", "x"]).no_compile_run is True
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--warmup", "0.1", "--out", "x"])


def test_old_run_configs_load_under_the_new_names() -> None:
    # A config.json written before the renames: the "seed" network and preset, "warmup".
    old = TrainConfig.from_json({"arch": "seed", "preset": "seed", "warmup": 0.05, "seed": 3})
    assert (old.arch, old.preset, old.lr_warmup, old.seed) == ("tutorial", "tutorial-modern", 0.05, 3)
    assert old == TrainConfig.from_json(old.to_json())


def env_without_frameworks(folder: Path, **extra: str) -> dict[str, str]:
    """As env_without_tensorflow, but Keras, JAX and PyTorch fail to import too."""
    env = env_without_tensorflow(folder, **extra)
    (folder / "sitecustomize.py").write_text(
        (folder / "sitecustomize.py")
        .read_text()
        .replace(
            'if name == "tensorflow" or name.startswith("tensorflow."):',
            'if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch"):',
        )
    )
    return env


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["train", "--preset", "cpu88"], id="train"),
        pytest.param(["train", "--preset", "airbench94", "--seeds", "0-1"], id="train-device-loop"),
        pytest.param(["evaluate", "saved_models/cifar10"], id="evaluate"),
    ],
)
def test_missing_data_is_reported_before_any_framework_and_before_the_run_folder(
    tmp_path: Path, args: list[str]
) -> None:
    env = env_without_frameworks(tmp_path / "no-frameworks", XDG_CACHE_HOME=str(tmp_path / "cache"))
    missing = tmp_path / "nowhere" / "cifar10.tar.gz"
    extra = ["--out", str(tmp_path / "run")] if args[0] == "train" else []
    done = subprocess.run(
        [sys.executable, "-m", "training", *args, "--data", str(missing), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(done, str(missing), "does not exist")
    assert not (tmp_path / "run").exists()
