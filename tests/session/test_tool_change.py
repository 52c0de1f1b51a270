"""What a class tool would do to its class, in mL, before it is written."""
import numpy as np
import pytest

from segview.core.labels import OverwritePolicy
from segview.core.phantoms import make_phantom
from segview.session import ReviewSession


@pytest.fixture
def session():
    case = make_phantom("cardiac", 0)
    opened = ReviewSession.open(case.volume, labels=case.labels, classes=list(case.classes))
    yield opened
    opened.close(discard=True)


def test_a_tools_change_counts_what_its_class_gains_and_loses_in_ml(session):
    ml = float(np.prod(session.volume.spacing)) / 1000
    before = session.labels.array.copy()
    job = session.tool_job("margin", 1, -1.5)  # shrink the right ventricle by 1.5 mm
    edits = job()
    change = session.tool_change(job, edits)
    np.testing.assert_array_equal(session.labels.array, before)  # nothing written yet
    session.finish_tool(job, edits)
    after = session.labels.array
    assert change.removed_ml == pytest.approx(np.count_nonzero((before == 1) & (after != 1)) * ml)
    assert change.added_ml == 0 and change.class_ml == pytest.approx(np.count_nonzero(before == 1) * ml)
    np.testing.assert_array_equal(change.mask, before != after)
    assert change.removed_fraction == pytest.approx(change.removed_ml / change.class_ml)
    changed = np.flatnonzero((before != after).any(axis=(1, 2))) + 1
    assert change.text() == (f"{change.removed_ml:.2f} mL removed (of {change.class_ml:.2f} mL) on "
                             f"{changed.size} slices ({changed[0]} to {changed[-1]})")


def test_a_tool_says_on_which_slices_it_changes_the_class(session):
    """A tester's "Keep the largest island" also took a piece on a slice far from the one shown."""
    session.labels.array[2, 2:4, 2:4] = 1
    session.labels.array[9, 2:4, 2:4] = 1
    job = session.tool_job("remove_islands", 1, None, True)
    change = session.tool_change(job, job())
    assert change.where() == "on slices 3, 10" and change.text().endswith("on slices 3, 10")


def test_a_tool_that_changes_nothing_says_so(session):
    job = session.tool_job("fill_holes", 3)  # the left ventricle has no holes
    change = session.tool_change(job, job())
    assert change.text() == "nothing changes" and change.removed_fraction == 0 and not change.mask.any()



def changed_under(session, policy, tool, *args):
    session.labels.policy = policy
    job = session.tool_job(tool, *args)
    return session.tool_change(job, job())


def test_a_tool_says_what_the_overwrite_policy_kept(session):
    """Growing the myocardium (2) under "background only" leaves the ventricles it would
    take; shrinking a protected class takes nothing. Each says how many voxels the policy
    kept, counted against the same tool under "everything"."""
    labels = session.labels.array
    free = changed_under(session, OverwritePolicy(), "margin", 2, 3.0)
    refused = free.mask & (labels != 0) & (labels != 2)
    change = changed_under(session, OverwritePolicy("background"), "margin", 2, 3.0)
    assert refused.any() and not (change.mask & refused).any() and change.added_ml > 0
    assert change.text().endswith(f"; {int(refused.sum())} voxels kept by 'Paint over: background only'")
    shrunk = int(changed_under(session, OverwritePolicy(), "margin", 1, -1.5).mask.sum())
    change = changed_under(session, OverwritePolicy("protect", frozenset({1})), "margin", 1, -1.5)
    assert shrunk
    assert change.text() == f"nothing changes; {shrunk} voxels kept by 'Paint over: all but protected classes'"
    assert not changed_under(session, OverwritePolicy(), "margin", 2, 3.0).kept


def test_islands_of_a_protected_class_say_what_the_protection_kept(session):
    """A tester's "Keep only the largest island" on a protected class said only "nothing changes"."""
    session.labels.array[0, 2:4, 2:4] = 1  # a detached island of the right ventricle
    free = changed_under(session, OverwritePolicy(), "remove_islands", 1, None, True)
    assert free.mask.sum() >= 4 and not free.kept
    change = changed_under(session, OverwritePolicy("protect", frozenset({1})), "remove_islands", 1, None, True)
    assert change.text() == f"nothing changes; {int(free.mask.sum())} voxels kept by 'Paint over: all but " \
        "protected classes'"
