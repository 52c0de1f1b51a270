"""While the window asks whether a checkpoint trained on another modality runs on the image,
the score panels say the model waits for that answer, not how to load checkpoints."""
from PySide6.QtWidgets import QMessageBox

from segview.cli import main as cli_main
from segview.resources import DEMO_MODELS

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
