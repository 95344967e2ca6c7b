"""Shared layers against TensorFlow's own ops, the architectures' names, and the
versioned-folder rule of the contract."""

from __future__ import annotations

import numpy as np
import pytest

from model import contract
from model.builders import build_model, feature_layers


def test_lrn_matches_tf_nn_lrn() -> None:
    tf = pytest.importorskip("tensorflow")
    from model.layers import LocalResponseNorm

    x = np.random.default_rng(0).normal(size=(2, 5, 5, 12)).astype(np.float32) * 4
    mine = np.asarray(LocalResponseNorm()(x))
    theirs = tf.nn.lrn(x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75).numpy()
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("arch", "options", "shapes"),
    [
        pytest.param(
            "tutorial",
            {},
            {
                "conv1": (32, 32, 64),
                "pool1": (16, 16, 64),
                "norm1": (16, 16, 64),
                "conv2": (16, 16, 64),
                "pool2": (8, 8, 64),
                "norm2": (8, 8, 64),
            },
            id="tutorial",
        ),
        pytest.param(
            "fast",
            {"widths": (16, 32, 32)},
            {"stem": (32, 32, 32), "block1": (16, 16, 16), "block2": (8, 8, 32), "block3": (4, 4, 32)},
            id="fast",
        ),
        pytest.param(
            "fast",
            {"widths": (16, 32, 32), "stem": "whiten"},
            {"stem": (31, 31, 24), "block1": (15, 15, 16), "block2": (7, 7, 32), "block3": (3, 3, 32)},
            id="fast-whiten",
        ),
    ],
)
def test_architectures_name_their_feature_layers(arch, options, shapes) -> None:
    model = build_model(arch, **options)
    assert tuple(shapes) == feature_layers(arch)
    for name, shape in shapes.items():
        assert tuple(model.get_layer(name).output.shape[1:]) == shape
    logits = model(np.zeros((2, 32, 32, 3), dtype=np.uint8), training=False)
    assert tuple(logits.shape) == (2, 10)


def test_tutorial_classifier_reads_the_second_lrn() -> None:
    # One of the tutorial's bugs: its classifier skipped norm2. Ours must consume it.
    model = build_model("tutorial")
    flatten = model.get_layer("flatten")
    assert flatten.input is model.get_layer("norm2").output


def test_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg")


def test_latest_version_dir(tmp_path) -> None:
    for v in ("1", "2", "10"):
        (tmp_path / v).mkdir()
        (tmp_path / v / "saved_model.pb").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    assert contract.latest_version_dir(tmp_path) == tmp_path / "10"
    assert contract.latest_version_dir(tmp_path / "2") == tmp_path / "2"


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        pytest.param([], "no numeric version", id="empty"),
        pytest.param(["3/"], "no saved_model.pb", id="version-without-pb"),
    ],
)
def test_latest_version_dir_errors(tmp_path, layout, message) -> None:
    for entry in layout:
        (tmp_path / entry).mkdir()
    with pytest.raises(contract.ModelDirError, match=message):
        contract.latest_version_dir(tmp_path)
    with pytest.raises(contract.ModelDirError, match="does not exist"):
        contract.latest_version_dir(tmp_path / "missing")
