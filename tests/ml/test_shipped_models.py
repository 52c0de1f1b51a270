"""The checkpoints in segview/resources/models segment phantom cases they never saw."""
import numpy as np
import pytest

from segview.core.metrics import ConfusionMatrix
from segview.core.phantoms import make_phantom
from segview.ml.checkpoint import read_metadata
from segview.ml.inference import Predictor
from segview.resources import shipped_models

EXPECTED = {"cardiac_ce": ("cardiac", "ce"), "cardiac_ce_dice": ("cardiac", "ce+dice"),
            "lung_ce": ("lung", "ce"), "lung_ce_dice": ("lung", "ce+dice")}
REQUIRED = ("cardiac_ce", "cardiac_ce_dice", "lung_ce", "lung_ce_dice")
UNSEEN_SEEDS = (1000, 1001, 1002)  # training used seeds 0 .. cases - 1


def test_the_shipped_checkpoints_are_known_ones():
    assert set(REQUIRED) <= set(shipped_models()) <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_checkpoint_metadata(name):
    task, loss = EXPECTED[name]
    meta = read_metadata(shipped_models()[name])
    assert meta["loss"]["name"] == loss and meta["loss"]["alpha"] == 1.0
    assert meta["training"]["source"].startswith(f"phantom {task}")
    assert max(int(s) for s in meta["training"]["source"].split("..")[-1:]) < min(UNSEEN_SEEDS)
    assert meta["validation"]["dice"]["mean"] > 0.8
    assert meta["architecture"]["base_channels"] in (16, 32)


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_checkpoint_reaches_dice_085_on_unseen_cases(name):
    task, _ = EXPECTED[name]
    predictor = Predictor.from_checkpoint(shipped_models()[name], device="cpu")
    dices = []
    for seed in UNSEEN_SEEDS:
        case = make_phantom(task, seed)
        predicted = predictor.predict_volume(case.volume)
        dices.append(ConfusionMatrix.from_arrays(predicted, case.labels,
                                                 predictor.num_classes).scores().mean_dice)
    assert np.mean(dices) >= 0.85, dices
