"""Each case keeps its classes (issue 24, items 4 and 5): names and colours from the case's
class file, else the dataset's dataset.json; saving writes them back unchanged; a crash and
recovery brings them back from the journal; an old journal without a class table still
recovers. Sessions without a window."""
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np

from segview.core.classes import LabelClass
from segview.core.io import load_classes, load_labels, load_volume, save_labels, save_volume
from segview.core.journal import image_key, journal_path
from segview.session import ReviewSession, Worklist
from segview.session.review import read_label_file

from .conftest import make_dataset, tiny_case

#: A class file as a person (or another program) wrote it: compact, a key segview does not
#: write, names and colours that differ from dataset.json's and from the default palette.
HAND_WRITTEN = (b'{"classes": [{"value": 0, "name": "background", "color": [0, 0, 0]}, '
                b'{"value": 1, "name": "liver", "color": [200, 30, 200]}, '
                b'{"value": 2, "name": "tumour", "color": [10, 220, 240]}], "written_by": "hand"}\n')
HAND_CLASSES = [(0, "background", (0, 0, 0)), (1, "liver", (200, 30, 200)), (2, "tumour", (10, 220, 240))]


def table(classes) -> list[tuple]:
    return [(c.value, c.name, tuple(c.color)) for c in classes]


def class_file(labels_path):
    return labels_path.with_name(labels_path.name.replace(".nii.gz", ".classes.json"))


def test_a_case_keeps_its_class_file_through_open_edit_and_save_byte_for_byte(tmp_path):
    make_dataset(tmp_path / "ds", 2)  # dataset.json: background, organ, lesion
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    class_file(labels_path).write_bytes(HAND_WRITTEN)
    worklist = Worklist.open(tmp_path / "ds")
    session = worklist.session("case_000")
    assert table(session.classes) == HAND_CLASSES  # not dataset.json's names, not the palette's colours
    session.labels.paint(1, [(3, 3)], 1.5, 2)
    session.mark_reviewed(1)
    assert session.save() == labels_path
    session.close()
    assert class_file(labels_path).read_bytes() == HAND_WRITTEN
    assert load_labels(labels_path, load_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz"))[1, 3, 3] == 2
    again = worklist.session("case_000")
    assert table(again.classes) == HAND_CLASSES
    again.close(discard=True)
    # The other case's class file, written by segview, with the dataset's names: its own values.
    other = Worklist.open(tmp_path / "ds").session("case_001")
    assert [c.name for c in other.classes] == ["background", "organ", "lesion"]
    other.close(discard=True)


def test_a_case_with_a_class_file_of_its_own_colours_saves_them_value_for_value(tmp_path):
    make_dataset(tmp_path / "ds", 1)
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    written = {"classes": [{"value": 0, "name": "background", "color": [0, 0, 0]},
                           {"value": 1, "name": "organ", "color": [255, 170, 0]},
                           {"value": 2, "name": "lesion", "color": [0, 90, 255]}]}
    class_file(labels_path).write_text(json.dumps(written, indent=2))
    session = Worklist.open(tmp_path / "ds").session("case_000")
    session.labels.paint(0, [(2, 2)], 1.0, 1)
    session.save()
    session.close()
    assert json.loads(class_file(labels_path).read_text()) == written


def test_a_case_without_a_class_file_takes_the_dataset_names_and_saving_writes_them(tmp_path):
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    session = Worklist.open(tmp_path / "ds").session("case_000")
    assert [(c.value, c.name) for c in session.classes] == [(0, "background"), (1, "organ"), (2, "lesion")]
    session.labels.paint(0, [(2, 2)], 1.0, 1)
    session.save()
    first = class_file(labels_path).read_bytes()
    assert [(c.value, c.name) for c in load_classes(labels_path)] == [(0, "background"), (1, "organ"), (2, "lesion")]
    session.labels.paint(2, [(2, 2)], 1.0, 2)
    session.save()
    session.close()
    assert class_file(labels_path).read_bytes() == first


CRASHING_SESSION = textwrap.dedent("""
    import json, os, signal, sys
    from segview.core.classes import LabelClass
    from segview.session import ReviewSession
    classes = [LabelClass(v, n, tuple(c)) for v, n, c in json.loads(sys.argv[2])]
    session = ReviewSession.open(sys.argv[1], classes=classes)
    session.labels.paint(1, [(8, 8)], 2.0, 1)
    session.labels.paint(3, [(5, 5)], 2.0, 2)
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_after_a_crash_the_recovered_session_has_its_class_names_and_colours(tmp_path):
    volume, _ = tiny_case(4)
    image = save_volume(tmp_path / "scan.nii.gz", volume)
    child = subprocess.run([sys.executable, "-c", CRASHING_SESSION, str(image), json.dumps(HAND_CLASSES)],
                           capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert child.returncode == -signal.SIGKILL and "ready" in child.stdout, child.stderr
    recovered = ReviewSession.recoverable(image)
    assert recovered is not None and table(recovered.classes) == HAND_CLASSES
    session = ReviewSession.open(image, recover=True)  # no class table given: the journal's
    assert table(session.classes) == HAND_CLASSES
    assert session.labels.array[1, 8, 8] == 1 and session.labels.array[3, 5, 5] == 2
    path = session.save(tmp_path / "scan.labels.nii.gz")
    session.close()
    assert table(load_classes(path)) == HAND_CLASSES


def test_a_worklist_case_whose_labels_came_with_other_classes_recovers_them(tmp_path):
    """A case without a class table of its own (no dataset.json names, no labels yet) given
    labels with named classes: a crash, then the case opened again gets those names back,
    and saving writes them, not "label 1"."""
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
    volume, labels = tiny_case(0)
    other = tmp_path / "elsewhere.nii.gz"
    from segview.core.io import save_labels

    save_labels(other, labels, volume, [LabelClass(v, n, c) for v, n, c in HAND_CLASSES])
    session = Worklist.open(tmp_path / "ds").session("case_000")
    session.replace_labels(read_label_file(other, session.volume))
    session.labels.paint(0, [(2, 2)], 1.0, 2)
    session.close()  # unsaved: its journal stays, as after a crash
    restored = Worklist.open(tmp_path / "ds").session("case_000", recover=True)
    assert table(restored.classes) == HAND_CLASSES
    saved = restored.save()
    restored.close()
    assert table(load_classes(saved)) == HAND_CLASSES


def _old_journal(path, labels: np.ndarray, key: str, region, values: np.ndarray) -> None:
    """A journal as segview wrote them before class tables: a snapshot whose header has no
    "classes", then one step (regions and marks only). Written here byte by byte."""
    def record(tag: bytes, header: dict, body: bytes) -> bytes:
        raw = json.dumps(header).encode()
        packed = zlib.compress(struct.pack("<I", len(raw)) + raw + body, 1)
        return struct.pack("<4sII", tag, len(packed), zlib.crc32(packed)) + packed

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"SVJ1"
                     + record(b"SNAP", {"image_key": key, "shape": list(labels.shape), "reviewed": [],
                                        "about": {"started": 1.0}}, labels.tobytes())
                     + record(b"STEP", {"regions": [[[s.start, s.stop] for s in region]], "marks": [[2, True, {}]]},
                              values.tobytes()))


def test_an_old_journal_without_a_class_table_still_recovers_and_keeps_the_case_classes(tmp_path):
    make_dataset(tmp_path / "ds", 1)
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    class_file(labels_path).write_bytes(HAND_WRITTEN)
    volume = load_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz")
    saved = load_labels(labels_path, volume)
    region = (slice(2, 3), slice(0, 4), slice(0, 4))
    _old_journal(journal_path(image_key(volume)), saved, image_key(volume), region, np.full((1, 4, 4), 2, np.uint8))
    recovered = ReviewSession.recoverable(volume)
    assert recovered is not None and recovered.steps == 1 and recovered.classes == []
    session = Worklist.open(tmp_path / "ds").session("case_000", recover=True)
    expected = saved.copy()
    expected[region] = 2
    np.testing.assert_array_equal(session.labels.array, expected)
    assert session.reviewed[2] and table(session.classes) == HAND_CLASSES
    session.save()
    session.close()
    assert class_file(labels_path).read_bytes() == HAND_WRITTEN


def test_a_class_file_that_misses_a_value_the_labels_hold_says_so_and_takes_the_datasets_name(tmp_path):
    make_dataset(tmp_path / "ds", 1)  # dataset.json: background, organ, lesion
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    volume = load_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz")
    assert {1, 2} <= set(np.unique(load_labels(labels_path, volume)))
    without_two = [{"value": 0, "name": "background", "color": [0, 0, 0]},
                   {"value": 1, "name": "liver", "color": [200, 30, 200]}]
    class_file(labels_path).write_text(json.dumps({"classes": without_two}))
    read = read_label_file(labels_path, volume)
    assert [(c.value, c.name) for c in read.classes] == [(0, "background"), (1, "liver"), (2, "label 2")]
    assert "names no class for label value(s) 2: shown as \"label 2\"" in read.warning
    alone = ReviewSession.open(volume, labels_path)
    assert [c.name for c in alone.classes] == ["background", "liver", "label 2"]
    assert any("names no class for label value(s) 2: shown as \"label 2\"" in w for w in alone.warnings)
    alone.close(discard=True)
    case = Worklist.open(tmp_path / "ds").session("case_000")
    assert table(case.classes)[1:] == [(1, "liver", (200, 30, 200)), (2, "lesion", table(case.classes)[2][2])]
    case.close(discard=True)


def test_a_dataset_json_that_misses_a_value_a_case_holds_says_so_and_shows_it_as_a_generic_class(tmp_path):
    make_dataset(tmp_path / "ds", 1)  # dataset.json: background, organ, lesion
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    volume = load_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz")
    labels = load_labels(labels_path, volume)
    labels[0, 0, 0] = 5
    save_labels(labels_path, labels, volume)
    class_file(labels_path).unlink(missing_ok=True)  # no table of its own: dataset.json's names
    session = Worklist.open(tmp_path / "ds").session("case_000")
    assert [(c.value, c.name) for c in session.classes] == [(0, "background"), (1, "organ"), (2, "lesion"),
                                                            (5, "label 5")]
    assert any("dataset.json) names no class for label value(s) 5" in w for w in session.warnings)
    session.close(discard=True)
