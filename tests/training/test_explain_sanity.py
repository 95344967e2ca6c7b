"""Sanity checks of the shipped default model's explanations (Adebayo et al., 2018;
training/explain_sanity.py has the definitions, docs/explain.md the measured values).

- Randomising every weight must change the maps: the mean |Spearman rho| between the
  trained and the randomised model's maps of the same images stays below 0.5.
- On 64 held-out validation images (the card's split), deleting pixels in the order
  of the true class's Grad-CAM (last block) lowers its probability faster than in the
  order of a random map of the same grain: the mean area under the deletion curve
  is at most 0.8 of the chance order's, Grad-CAM wins on most images, and deleting
  the least salient pixels first lowers it more slowly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from model import contract
from tests.conftest import SHARED_DATA, SHIPPED

RHO_LIMIT = 0.5
AUC_RATIO_LIMIT = 0.8
LAST_BLOCK = contract.GRADCAM_PREFIX + "block3"


@pytest.fixture(scope="module")
def sanity() -> dict[str, Any]:
    from training.explain_sanity import run

    return run(SHIPPED / "6", str(SHARED_DATA), report=False)  # only the orders asserted on


@pytest.mark.parametrize("name", [LAST_BLOCK, contract.SALIENCY])
def test_maps_change_when_the_weights_are_randomised(sanity: dict[str, Any], name: str) -> None:
    assert sanity["randomisation"][name]["mean_abs_rho"] < RHO_LIMIT, sanity["randomisation"]


def test_deleting_gradcam_pixels_first_beats_chance(sanity: dict[str, Any]) -> None:
    versus = sanity["gradcam_vs_chance"]
    assert versus["auc_ratio"] < AUC_RATIO_LIMIT, sanity["deletion"]
    assert versus["images_where_gradcam_wins"] > 0.5, versus
    deletion = sanity["deletion"]
    assert deletion[f"{LAST_BLOCK} (most salient first)"] < deletion[f"{LAST_BLOCK} (least salient first)"], deletion


def test_spearman_and_deletion_helpers() -> None:
    from training.explain_sanity import area, deletion_curves, rank, salient_first, spearman

    assert rank(np.array([3.0, 1.0, 1.0, 2.0])).tolist() == [4.0, 1.5, 1.5, 3.0]
    a = np.arange(16.0).reshape(4, 4)
    assert spearman(a, a**3) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0
    # A "model" whose probability is the share of undeleted pixels: the area is 1/2.
    images = np.full((1, 32, 32, 3), 255, np.uint8)

    def predict(batch: np.ndarray) -> np.ndarray:
        kept = (batch[:, :, :, 0] == 255).mean(axis=(1, 2))
        return np.stack([kept, 1 - kept], axis=1)

    curves = deletion_curves(
        predict, images, np.array([0]), salient_first(np.random.default_rng(0).random((1, 32, 32)))
    )
    assert curves[0, 0] == 1.0 and curves[0, -1] == 0.0
    assert area(curves)[0] == pytest.approx(0.5)
