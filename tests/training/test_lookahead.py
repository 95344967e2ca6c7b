"""The lookahead callback: its averaging schedule and what it does to the weights."""

from __future__ import annotations

import numpy as np
import pytest

from training.lookahead import EVERY, MAX_DECAY, Lookahead, decay_after, decay_at


def test_decay_schedule_grows_cubically_to_its_maximum() -> None:
    assert decay_at(0, 100) == 0.0
    assert decay_at(50, 100) == pytest.approx(MAX_DECAY / 8)
    assert decay_at(100, 100) == pytest.approx(MAX_DECAY)
    assert decay_at(150, 100) == pytest.approx(MAX_DECAY)  # never past the end


def test_averages_every_fifth_step_and_after_the_last() -> None:
    assert [decay_after(step, 12) for step in range(1, 13) if decay_after(step, 12) is not None] == [
        decay_at(5, 12),
        decay_at(10, 12),
        1.0,  # airbench: after the last step the network takes the average as it stands
    ]
    assert decay_after(10, 10) == decay_at(10, 10)  # a last step that is a fifth averages as usual


class _FakeOptimizer:
    iterations = 0


class _FakeModel:
    """Just what the callback touches: weights and the optimiser's step counter."""

    def __init__(self, weights: list[np.ndarray]) -> None:
        self.weights = weights
        self.optimizer = _FakeOptimizer()

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = [w.copy() for w in weights]


def test_every_fifth_step_pulls_the_weights_back_to_the_average() -> None:
    total = 20
    model = _FakeModel([np.zeros(3, dtype=np.float32), np.array([7], dtype=np.int64)])
    callback = Lookahead(total)
    callback.set_model(model)  # type: ignore[arg-type]
    callback.on_train_begin()
    average = np.zeros(3)
    for step in range(1, total + 1):
        model.weights[0] = model.weights[0] + 1.0  # "training" moves the weights
        model.optimizer.iterations = step
        callback.on_train_batch_end(step - 1)
        if step % EVERY == 0:
            decay = decay_at(step, total)
            average = average * decay + (average + EVERY) * (1 - decay)
            np.testing.assert_allclose(model.weights[0], average, rtol=1e-6)
    # Late in training the average holds back part of the last steps' progress...
    assert model.weights[0][0] < total
    # ...and integer weights are carried, not averaged.
    assert model.weights[1].tolist() == [7]
