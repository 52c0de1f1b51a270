"""The window under a locale with decimal commas still reads and writes NRRD numbers right."""
import locale

import numpy as np
import pytest
import SimpleITK as sitk

from segview.gui.app import keep_c_numbers


@pytest.fixture
def german_numbers():
    before = locale.setlocale(locale.LC_NUMERIC)
    for name in ("de_DE.UTF-8", "de_DE.utf8", "de_DE"):
        try:
            locale.setlocale(locale.LC_NUMERIC, name)  # what Qt does under LC_ALL=de_DE.UTF-8
            break
        except locale.Error:
            continue
    else:
        pytest.skip("no German locale installed")
    yield
    locale.setlocale(locale.LC_NUMERIC, before)


def test_nrrd_spacing_survives_a_decimal_comma_locale(german_numbers, tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))
    image.SetSpacing((1.3174, 1.3174, 5.08))
    image.SetOrigin((-167.97, -160.74, -225.16))
    keep_c_numbers()
    sitk.WriteImage(image, str(tmp_path / "labels.nrrd"))
    assert b"1.317" in (tmp_path / "labels.nrrd").read_bytes()[:400]
    read = sitk.ReadImage(str(tmp_path / "labels.nrrd"))
    assert read.GetSpacing() == pytest.approx((1.3174, 1.3174, 5.08))
    assert read.GetOrigin() == pytest.approx((-167.97, -160.74, -225.16))
