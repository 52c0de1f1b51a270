"""Class colours and model colours: a model's outline is never mistaken for a class."""
import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from segview.core.classes import DEFAULT_COLORS, DISTINCT, MODEL_COLORS, LabelClass, color_difference, completed_classes
from segview.core.phantoms import make_phantom


def lab(color) -> np.ndarray:
    return rgb2lab(np.array(color, float)[None, None] / 255)[0, 0]


def test_color_difference_is_scikit_images_ciede2000():
    for first, second in (((255, 0, 0), (240, 80, 70)), ((0, 255, 0), (80, 200, 120)), ((0, 0, 0), (255, 255, 255))):
        assert color_difference(first, second) == pytest.approx(float(deltaE_ciede2000(lab(first), lab(second))))


def palettes() -> dict[str, list]:
    found = {"default": list(DEFAULT_COLORS)}
    for task in ("cardiac", "lung"):
        found[task] = [c.color for c in make_phantom(task, 0).classes if c.value]
    return found


@pytest.mark.parametrize("palette", ["default", "cardiac", "lung"])
def test_every_class_colour_is_far_from_both_model_colours(palette):
    for color in palettes()[palette]:
        for slot, model in MODEL_COLORS.items():
            difference = float(deltaE_ciede2000(lab(color), lab(model)))
            assert difference >= DISTINCT, f"{palette} class colour {color} looks like model {slot}'s {model}"


def test_the_two_model_colours_are_far_apart():
    assert float(deltaE_ciede2000(lab(MODEL_COLORS["A"]), lab(MODEL_COLORS["B"]))) >= 2 * DISTINCT


def test_a_class_table_gets_a_generic_class_for_each_value_it_does_not_name():
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 0, :3] = (1, 3, 5)
    table = [LabelClass(0, "background", (0, 0, 0)), LabelClass(3, "tumour", (9, 9, 9))]
    completed, added = completed_classes(table, labels)
    assert added == [1, 5]
    assert [(c.value, c.name) for c in completed] == [(0, "background"), (1, "label 1"), (3, "tumour"), (5, "label 5")]
    assert completed[1].color == DEFAULT_COLORS[0]


def test_a_table_of_background_alone_gets_a_class_to_paint_with_and_no_table_stays_none():
    empty = np.zeros((1, 2, 2), np.uint8)
    assert completed_classes([LabelClass(0, "background", (0, 0, 0))], empty)[1] == [1]
    assert completed_classes([], np.ones((1, 2, 2), np.uint8)) == ([], [])
    full = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "liver", (1, 2, 3))]
    assert completed_classes(full, np.ones((1, 2, 2), np.uint8)) == (full, [])


def test_a_value_the_table_skips_is_found_below_the_largest_and_none_is_invented_above_it():
    """The table's values up to the labels' largest tell at once that none is missing; a
    gap below it is still found (the values held counted then)."""
    table = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "a", (1, 1, 1)), LabelClass(4, "d", (4, 4, 4))]
    labels = np.zeros((2, 3, 3), np.uint8)
    labels[0, 0, 0] = 1
    assert completed_classes(table, labels)[1] == []  # 4 named but absent; 2 and 3 neither named nor held
    labels[1, 2, 2] = 3
    assert completed_classes(table, labels)[1] == [3]
    labels[1, 1, 1] = 9
    assert completed_classes(table, labels)[1] == [3, 9]
