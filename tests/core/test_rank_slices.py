"""``rank_slices``: slices already reviewed come after every slice not yet reviewed, in the
same order among themselves, for both rankings."""
import numpy as np

from segview.core.compare import rank_slices
from segview.core.labels import LabelMap
from segview.core.live import LiveMetrics


def test_reviewed_slices_rank_after_the_unreviewed_in_their_own_order():
    labels = LabelMap(np.zeros((5, 8, 8), np.uint8), (1, 1, 1))
    labels.array[:, 2:6, 2:6] = 1
    a, b = labels.array.copy(), labels.array.copy()
    for z, voxels in enumerate((0, 6, 4, 8, 2)):  # B misses ``voxels`` of the square on slice z
        b[z].flat[np.flatnonzero(labels.array[z])[:voxels]] = 0
    live = LiveMetrics(labels, 2)
    live.add_model("A", a)
    live.add_model("B", b)
    assert [r.z for r in rank_slices(live)] == [3, 1, 2, 4]  # most disputed first; slice 0: none
    labels.set_reviewed(3)
    labels.set_reviewed(2)
    ranks = rank_slices(live)
    assert [(r.z, r.reviewed) for r in ranks] == [(1, False), (4, False), (3, True), (2, True)]
    worst = rank_slices(live, by="worst")  # B's Dice: 1, 10/13, 6/7, 8/12, 14/15; A's is 1
    assert [(r.z, r.reviewed) for r in worst] == [(1, False), (4, False), (0, False), (3, True), (2, True)]
