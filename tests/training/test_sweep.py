"""The sweep script hands its settings to the training CLI as flags: every setting it
can generate must reach TrainConfig unchanged, or a sweep ranks the wrong runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from training.cli import _parser, _train_config

ROOT = Path(__file__).resolve().parents[2]


def _load_sweep():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("sweep_training", ROOT / "scripts" / "sweep_training.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _load_sweep()
ALL_CONFIGS = [
    *sweep.stage1(),
    *sweep.stage2({"lr": 0.4, "weight_decay": 0.016, "dirac": True}),
    *json.loads((ROOT / "scripts" / "sweeps" / "cpu88-round2.json").read_text()),
]


@pytest.mark.parametrize("overrides", ALL_CONFIGS, ids=[sweep.run_name(c) for c in ALL_CONFIGS])
def test_every_generated_setting_reaches_the_config(overrides: dict) -> None:
    args = _parser().parse_args(["train", "--preset", "cpu88", *sweep.cli_args(overrides), "--out", "x"])
    cfg = _train_config(args)
    for key, value in overrides.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(cfg, key) == expected, key


def test_flags_switch_booleans_both_ways() -> None:
    assert sweep.cli_args({"lookahead": True, "dirac": False}) == ["--lookahead", "--no-dirac"]
    assert sweep.cli_args({"widths": (64, 256, 256)}) == ["--widths", "64,256,256"]


def test_run_names_are_distinct_and_name_the_base() -> None:
    names = [sweep.run_name(c) for c in ALL_CONFIGS]
    assert sweep.run_name({}) == "base"
    assert len(set(names)) == len({json.dumps(c, sort_keys=True) for c in ALL_CONFIGS})


def test_stage2_keeps_only_the_learning_rate_and_decay_of_the_best() -> None:
    combos = sweep.stage2({"lr": 0.4, "weight_decay": 0.016, "dirac": True, "seed": 3})
    assert all(c["lr"] == 0.4 and c["weight_decay"] == 0.016 and "seed" not in c for c in combos)
    assert {"lookahead": True} in [{k: v for k, v in c.items() if k == "lookahead"} for c in combos]


def test_tables_rank_by_accuracy_and_summarise_seeds() -> None:
    rows = [
        {
            "name": "a",
            "overrides": {"lr": 0.4},
            "status": "ok",
            "val_accuracy": 0.88,
            "val_accuracy_tta": 0.89,
            "train_seconds": 5,
        },
        {
            "name": "a-seed1",
            "overrides": {"lr": 0.4, "seed": 1},
            "status": "ok",
            "val_accuracy": 0.90,
            "val_accuracy_tta": 0.91,
            "train_seconds": 5,
        },
        {"name": "b", "overrides": {}, "status": "exit 1"},
    ]
    table = sweep.table(rows).splitlines()
    assert table[2].startswith("| a-seed1 | 90.00") and table[-1].startswith("| b | - |")
    assert "| lr0.4 | 2 | 89.00 | 1.41 | 88.00 |" in sweep.seed_summary(rows)
