"""Rulers through the session: lengths from the real geometry (against SimpleITK on an
oblique, anisotropic grid), kept in the review sidecar across save and open, deleted,
written as CSV, journalled (back after SIGKILL); bad rulers refused with a message."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from segview.core.io import save_volume
from segview.core.journal import recover
from segview.core.review_state import review_path
from segview.core.volume import Volume
from segview.session import ReviewSession
from segview.session.errors import SessionError
from segview.session.rulers import measurements_path


@pytest.fixture
def oblique():
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    array = np.random.default_rng(2).integers(0, 100, (8, 30, 40)).astype(np.int16)
    return Volume(array, spacing=(0.6, 0.8, 7.5), origin=(-10.0, 20.0, 5.0), direction=tuple(q.ravel()))


def sitk_length(volume, a, b) -> float:
    image = volume.to_sitk()
    ends = [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in end[::-1]]) for end in (a, b)]  # x, y, z
    return math.dist(*ends)


def test_rulers_measure_in_mm_and_live_in_the_sidecar(tmp_path, oblique):
    session = ReviewSession.open(oblique)
    first = session.rulers.add((3, 2.5, 4.0), (3, 20.0, 31.5), axis=0)
    second = session.rulers.add((1.0, 10, 7.25), (6.0, 10, 30.0), axis=1)  # coronal: across slices of 7.5 mm
    assert first.length_mm == pytest.approx(sitk_length(oblique, (3, 2.5, 4.0), (3, 20.0, 31.5)))
    assert second.length_mm == pytest.approx(sitk_length(oblique, (1.0, 10, 7.25), (6.0, 10, 30.0)))
    assert (first.axis, first.index, second.axis, second.index) == (0, 3, 1, 10)
    assert session.rulers.on_plane(0, 3) == [first] and session.rulers.on_plane(0, 4) == []
    assert session.modified  # closing asks: the rulers are saved with the labels
    path = session.save(tmp_path / "case.labels.nii.gz")
    assert not session.modified
    saved = json.loads(review_path(path).read_text())["rulers"]
    assert [entry["length_mm"] for entry in saved] == [pytest.approx(first.length_mm, abs=1e-4),
                                                      pytest.approx(second.length_mm, abs=1e-4)]
    session.close()
    again = ReviewSession.open(oblique, labels=path)
    assert again.rulers.all() == [first, second]
    assert not again.modified
    again.rulers.remove(first)
    assert again.rulers.all() == [second] and again.modified


def test_rulers_are_written_as_csv_beside_the_metrics(tmp_path, oblique):
    session = ReviewSession.open(oblique)
    ruler = session.rulers.add((3, 2.5, 4.0), (3, 20.0, 31.5), axis=0)
    target = measurements_path(tmp_path / "metrics.csv")
    assert target.endswith("metrics.measurements.csv")
    session.rulers.write_csv(target)
    rows = list(csv.DictReader(open(target)))
    assert len(rows) == 1 and rows[0]["slice"] == "4" and rows[0]["view_axis"] == "z (axial)"
    assert float(rows[0]["length_mm"]) == pytest.approx(ruler.length_mm)
    assert rows[0]["a_zyx"] == "3 2.5 4"


@pytest.mark.parametrize("a, b, axis, message", [
    ((3, 5, 5), (3, 5, 5), 0, "two distinct ends"),
    ((3, 5, 5), (4, 9, 9), 0, "one slice"),
    ((3, 5, 5), (3, 5, 45), 0, "on the image"),
])
def test_bad_rulers_are_refused_and_unreadable_entries_kept(oblique, a, b, axis, message):
    session = ReviewSession.open(oblique)
    session.review_extra["rulers"] = [{"axis": 7}, "nonsense"]  # a later version's, or damaged
    with pytest.raises(SessionError, match=message):
        session.rulers.add(a, b, axis)
    assert session.rulers.all() == []
    session.rulers.add((3, 5, 5), (3, 6, 6), 0)
    assert len(session.rulers) == 1 and session.review_extra["rulers"][:2] == [{"axis": 7}, "nonsense"]


DRAWING_SESSION = textwrap.dedent("""
    import os, signal, sys
    from segview.session import ReviewSession
    session = ReviewSession.open(sys.argv[1])
    first = session.rulers.add((3, 2.5, 4.0), (3, 20.0, 31.5), axis=0)
    session.rulers.add((1.0, 10, 7.25), (6.0, 10, 30.0), axis=1)
    session.rulers.remove(first)                 # no label step: journalled all the same
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_after_sigkill_the_rulers_come_back(tmp_path, oblique):
    image = tmp_path / "oblique.nii.gz"
    save_volume(image, oblique)
    child = subprocess.run([sys.executable, "-c", DRAWING_SESSION, str(image)], capture_output=True, text=True,
                           env=dict(os.environ), timeout=120)
    assert child.returncode == -signal.SIGKILL and "ready" in child.stdout, child.stderr
    recovered = ReviewSession.recoverable(image)
    assert recovered is not None and recovered.steps == 3  # two drawn, one deleted
    session = ReviewSession.open(image, recover=True)
    [ruler] = session.rulers.all()
    assert (ruler.axis, ruler.index, ruler.a, ruler.b) == (1, 10, (1.0, 10, 7.25), (6.0, 10, 30.0))
    assert session.modified
    path = session.save(tmp_path / "oblique.labels.nii.gz")
    assert [entry["a"] for entry in json.loads(review_path(path).read_text())["rulers"]] == [[1.0, 10, 7.25]]
    session.close()


def test_a_ruler_drawn_and_deleted_leaves_nothing_to_recover(oblique):
    session = ReviewSession.open(oblique)
    session.rulers.remove(session.rulers.add((3, 2.5, 4.0), (3, 20.0, 31.5), axis=0))
    session.close()
    assert ReviewSession.recoverable(oblique) is None


def test_a_ruler_drawn_while_a_step_is_open_is_journalled_with_that_step_not_before_it(oblique):
    session = ReviewSession.open(oblique)
    session.journal.wait()
    labels = session.labels
    labels.begin_stroke()  # a drag, or a copy written slab by slab
    labels.paint(3, [(10, 10)], 3.0, 1)
    session.rulers.add((3, 2.5, 4.0), (3, 20.0, 31.5), axis=0)
    assert session.journal.steps == 0  # half a step never becomes a record
    labels.end_stroke()
    assert session.journal.steps == 1
    recovered = recover(session.journal.path)  # as a crash now would leave it
    assert recovered.steps == 1 and len(recovered.sidecar["rulers"]) == 1 and recovered.labels[3].any()
    session.close(discard=True)


def test_opening_another_label_file_keeps_the_rulers_drawn_and_brings_its_own(tmp_path, oblique):
    """Rulers measure the image. A tester's Open labels kept the rulers drawn but dropped the
    new file's own, and saved the file as if it held the others already."""
    from segview.session import read_label_file

    first = ReviewSession.open(oblique)
    theirs = first.rulers.add((3, 2.5, 4.0), (3, 20.0, 31.5), axis=0)
    path = first.save(tmp_path / "theirs.labels.nii.gz")
    first.close()
    session = ReviewSession.open(oblique)
    ours = session.rulers.add((5, 1.0, 1.0), (5, 9.0, 9.0), axis=0)
    session.replace_labels(read_label_file(path, oblique, session.key))
    assert session.rulers.all() == [ours, theirs]
    assert session.modified  # the file holds no ruler of ours: saving it is not a no-op
    session.close(discard=True)
