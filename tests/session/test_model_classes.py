"""A checkpoint of other classes than the labels' or the other model's is refused, never
scored under another class's column; a checkpoint segview did not train says what its
metadata knows."""
import torch
from monai.networks.nets import BasicUNet

from segview.core.phantoms import make_phantom
from segview.ml.importers import import_state_dict
from segview.resources import MODELS
from segview.session import ReviewSession
from segview.session.models import load_predictor

LUNG, CARDIAC = MODELS / "lung_ce.safetensors", MODELS / "cardiac_ce.safetensors"


def test_a_checkpoint_of_other_classes_than_the_labels_is_refused():
    case = make_phantom("cardiac", 0)
    session = ReviewSession.open(case.volume, labels=case.labels, classes=list(case.classes))
    try:
        conflict = session.class_conflict("A", load_predictor(LUNG))
        assert conflict is not None and "infection" in conflict and "right ventricle" in conflict
        assert session.class_conflict("A", load_predictor(CARDIAC)) is None
    finally:
        session.close(discard=True)


def test_a_checkpoint_of_other_classes_than_the_other_model_is_refused():
    case = make_phantom("lung", 0)
    session = ReviewSession.open(case.volume)  # no class table of its own: the models' count
    try:
        assert session.class_conflict("A", load_predictor(CARDIAC)) is None
        session.load_model("A", LUNG)
        conflict = session.class_conflict("B", load_predictor(CARDIAC))
        assert conflict is not None and "model A" in conflict and "infection" in conflict
        assert session.class_conflict("A", load_predictor(CARDIAC)) is None  # replacing A itself
        assert session.class_conflict("B", load_predictor(MODELS / "lung_ce_dice.safetensors")) is None
    finally:
        session.close(discard=True)


def test_an_imported_checkpoint_says_its_architecture_modality_and_classes(tmp_path):
    torch.save(BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4)).state_dict(), tmp_path / "weights.pth")
    path = import_state_dict(tmp_path / "weights.pth", "monai-basicunet", ["background", "infection"], "CT",
                             tmp_path / "monai_lung.safetensors", input_size=64).path
    case = make_phantom("lung", 0)
    session = ReviewSession.open(case.volume, labels=case.labels, classes=list(case.classes))
    try:
        model = session.load_model("A", path)
        for text in (model.describe(), model.describe(data=True)):
            assert text == "monai_lung: imported monai-basicunet from weights.pth, CT, class infection"
    finally:
        session.close(discard=True)
