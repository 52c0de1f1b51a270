"""While the window asks whether a checkpoint trained on another modality runs on the image,
the score panels say the model waits for that answer, not how to load checkpoints."""
from PySide6.QtWidgets import QMessageBox

from segview.cli import main as cli_main
from segview.resources import DEMO_MODELS, MODELS

from .helpers import load_models


def test_the_score_panels_say_a_model_waits_for_the_answer_while_it_is_asked(qtbot, demo, monkeypatch, tmp_path):
    window = demo
    load_models(qtbot, window, DEMO_MODELS[:1], "A")
    assert cli_main(["phantom", "lung", "-o", str(tmp_path / "lung"), "--format", "dicom"]) == 0
    seen = []

    def question(parent, title, text, *_):
        seen.append((title, window.metrics.hint.text(), window.measures_controller.panel.hint.text()))
        return QMessageBox.No

    monkeypatch.setattr(QMessageBox, "question", question)
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.open_image(tmp_path / "lung" / "imagesTr" / "lung_000")
    [(title, metrics_hint, measures_hint)] = seen
    assert title == "Run model A on this image?"
    for hint in (metrics_hint, measures_hint):
        assert "Load checkpoints" not in hint and "Model A: waiting for your answer" in hint
    assert "Load checkpoints" in window.metrics.hint.text()  # answered No: no model now


def test_models_declined_for_an_image_or_of_another_dataset_s_classes_never_serve_a_dataset(
        qtbot, demo, dialogs, tmp_path):
    """A tester declined both cardiac models on a lung CT, loaded lung_ce as A and opened the
    lung dataset: the worklist still ran the declined cardiac_ce_dice as B on every case."""
    window, controller = demo, demo.worklist_controller
    load_models(qtbot, window, DEMO_MODELS)
    assert cli_main(["phantom", "lung", "-o", str(tmp_path / "lung"), "--format", "dicom"]) == 0
    assert cli_main(["phantom", "cardiac", "-o", str(tmp_path / "cardiac")]) == 0
    dialogs.answers = [QMessageBox.No, QMessageBox.No]       # neither MR model runs on the CT
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.open_image(tmp_path / "lung" / "imagesTr" / "lung_000")
    qtbot.waitUntil(lambda: not window.session.models and len(dialogs) == 2, timeout=30000)
    assert dialogs.defaults == [QMessageBox.StandardButton.No] * 2   # Enter does not run them
    lung_ce = MODELS / "lung_ce.safetensors"
    load_models(qtbot, window, [lung_ce], "A")
    assert controller.checkpoints == {"A": lung_ce}

    with qtbot.waitSignal(controller.case_opened, timeout=60000) as opened:   # the image gives way to a case
        controller.open_dataset(tmp_path / "lung")
    assert controller.worklist.checkpoints == {"A": lung_ce}
    assert opened.args == ["lung_000"] and window.session.case.name == "lung_000"
    assert set(window.session.models) == {"A"}

    # The cardiac dataset names other classes: lung_ce is refused there, saying why.
    with qtbot.waitSignal(controller.case_opened, timeout=60000):
        controller.open_dataset(tmp_path / "cardiac")
    assert controller.worklist.checkpoints == {} and controller.checkpoints == {}
    assert window.session.case.name == "cardiac_000" and not window.session.models
    kind, text = dialogs[-1]
    assert kind == "critical" and text.startswith("Model A (lung_ce.safetensors): Its class 1 is \u201cinfection\u201d "
                                                  "where the dataset's classes have \u201cright ventricle\u201d")
    assert "no models" in controller.panel.title.text()


def test_a_checkpoint_of_another_modality_serves_a_dataset_only_when_the_user_says_so(qtbot, window, dialogs,
                                                                                    tmp_path):
    assert cli_main(["phantom", "cardiac", "-o", str(tmp_path / "cardiac")]) == 0  # dataset.json: MRI
    controller = window.worklist_controller
    ct = tmp_path / "ct_cardiac.safetensors"
    ct.write_bytes((MODELS / "cardiac_ce.safetensors").read_bytes())
    _set_modality(ct, "CT")
    for answer, kept in ((QMessageBox.No, {}), (QMessageBox.Yes, {"A": ct})):
        dialogs.answers = [answer]
        with qtbot.waitSignal(controller.dataset_opened, timeout=60000):
            controller.open_dataset(tmp_path / "cardiac", {"A": ct})
        kind, text = dialogs[-1]
        assert kind == "question" and "trained on CT images but the dataset is MR" in text
        assert "every case of cardiac" in text and dialogs.defaults[-1] == QMessageBox.StandardButton.No
        assert controller.worklist.checkpoints == kept


def _set_modality(path, modality: str) -> None:
    """Rewrite checkpoint ``path`` as trained on ``modality``."""
    from segview.ml.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(path)
    meta["preprocessing"]["modality"] = modality
    save_checkpoint(path, model, meta)


def test_an_edited_image_on_screen_is_asked_about_before_a_dataset_s_first_case_takes_its_place(
        qtbot, demo, dialogs, tmp_path):
    window, controller = demo, demo.worklist_controller
    assert cli_main(["phantom", "cardiac", "-o", str(tmp_path / "cardiac"), "--count", "2"]) == 0
    demo_session = window.session
    z = window.current_slice()
    demo_session.labels.paint(z, [(5, 5)], 3.0, 1)
    window.refresh_session()
    assert demo_session.modified
    dialogs.answers = [QMessageBox.Cancel]
    with qtbot.waitSignal(controller.dataset_opened, timeout=60000):
        controller.open_dataset(tmp_path / "cardiac")
    qtbot.waitUntil(lambda: bool(dialogs), timeout=60000)
    assert dialogs[0] == ("question", "The labels or their review marks have unsaved changes. Save them?")
    qtbot.waitUntil(lambda: controller.opening is None, timeout=60000)
    assert window.session is demo_session and demo_session.modified          # Cancel: the image stays, edits kept
    dialogs.answers = [QMessageBox.Discard]
    with qtbot.waitSignal(controller.case_opened, timeout=60000):
        controller.open_case("cardiac_000")
    assert window.session.case.name == "cardiac_000"


def test_the_level_tolerance_is_the_new_image_s_while_a_model_is_asked_about(qtbot, demo, monkeypatch, tmp_path):
    """While the window asked whether the MR checkpoint runs on a CT, the CT was on screen
    but the Level tool's tolerance still was the MR demo's, until the answer."""
    window = demo
    load_models(qtbot, window, DEMO_MODELS[:1], "A")
    demo_tolerance = window.level_controller.tolerance.value()
    assert cli_main(["phantom", "lung", "-o", str(tmp_path / "lung"), "--format", "dicom"]) == 0
    asked = []

    def question(parent, title, text, *_):
        asked.append((window.session.volume.modality, window.level_controller.tolerance.value()))
        return QMessageBox.No

    monkeypatch.setattr(QMessageBox, "question", question)
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.open_image(tmp_path / "lung" / "imagesTr" / "lung_000")
    ct_tolerance = window.level_controller.tolerance.value()
    assert ct_tolerance != demo_tolerance
    assert asked == [("CT", ct_tolerance)]
    assert window.level_controller.effect.tolerance == ct_tolerance
