"""Datasets, the split by case, intensity normalisation, slices to/from the network, augmentation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segview.cli import main
from segview.core.io import save_labels
from segview.core.volume import Volume
from segview.ml.data import (DatasetError, augment, folder_dataset, from_network,
                             labels_to_network, normalization_for, normalize, padded_shape, split_cases,
                             to_network)


@pytest.fixture(scope="module")
def cardiac_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cardiac")
    assert main(["phantom", "cardiac", "-o", str(folder), "--count", "3"]) == 0
    return folder


def test_folder_dataset_reads_the_nnunet_layout(cardiac_folder):
    dataset = folder_dataset(cardiac_folder)
    assert [c.name for c in dataset.cases] == ["cardiac_000", "cardiac_001", "cardiac_002"]
    assert [c.name for c in dataset.classes] == ["background", "right ventricle", "myocardium",
                                                 "left ventricle"]
    assert all(c.volume.shape == c.labels.shape for c in dataset.cases)
    assert dataset.skipped == []


def test_pairs_with_disagreeing_geometry_are_skipped_and_reported(cardiac_folder, tmp_path):
    import shutil
    shutil.copytree(cardiac_folder, tmp_path / "data")
    case = folder_dataset(tmp_path / "data").cases[1]
    shifted = Volume(case.volume.array, case.volume.spacing,
                     tuple(o + 5.0 for o in case.volume.origin), case.volume.direction)
    save_labels(tmp_path / "data" / "labelsTr" / "cardiac_001.nii.gz", case.labels, shifted)
    dataset = folder_dataset(tmp_path / "data")
    assert [c.name for c in dataset.cases] == ["cardiac_000", "cardiac_002"]
    assert len(dataset.skipped) == 1 and "cardiac_001" in dataset.skipped[0]
    assert "origin" in dataset.skipped[0]


def test_evaluate_names_every_case_it_leaves_out(cardiac_folder, tmp_path, capsys):
    """A tester's evaluate scored 2 of 4 cases without a word: one without labels, one on
    another grid."""
    import shutil
    shutil.copytree(cardiac_folder, tmp_path / "data")
    (tmp_path / "data" / "labelsTr" / "cardiac_002.nii.gz").unlink()
    case = folder_dataset(tmp_path / "data").cases[1]
    shifted = Volume(case.volume.array, case.volume.spacing,
                     tuple(o + 5.0 for o in case.volume.origin), case.volume.direction)
    save_labels(tmp_path / "data" / "labelsTr" / "cardiac_001.nii.gz", case.labels, shifted)
    model = Path(__file__).parents[2] / "segview" / "resources" / "models" / "cardiac_ce.safetensors"
    assert main(["evaluate", str(model), "--data", str(tmp_path / "data"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "segview: skipped cardiac_002: no label file in labelsTr/" in err
    assert "segview: skipped cardiac_001: " in err and "origin" in err


def test_labels_outside_the_declared_classes_are_an_error(cardiac_folder, tmp_path):
    import shutil
    shutil.copytree(cardiac_folder, tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "heart": 1}}))
    with pytest.raises(DatasetError, match="label 3, but the dataset declares only classes 0..1"):
        folder_dataset(tmp_path / "data")


def test_dataset_json_without_labels_takes_the_classes_from_the_label_files(cardiac_folder, tmp_path):
    """A tester's dataset.json without "labels" opened in the worklist and in evaluate
    --reviewed-only, but evaluate and train refused it: "dataset.json cannot be read: 'labels'"."""
    import shutil
    shutil.copytree(cardiac_folder, tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"name": "cardiac", "file_ending": ".nii.gz"}))
    classes = folder_dataset(tmp_path / "data").classes
    assert [c.name for c in classes] == ["background", "right ventricle", "myocardium", "left ventricle"]


def test_a_dataset_json_that_is_no_object_says_so(cardiac_folder, tmp_path):
    import shutil
    shutil.copytree(cardiac_folder, tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="dataset.json holds no JSON object"):
        folder_dataset(tmp_path / "data")
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"labels": ["background", "heart"]}))
    with pytest.raises(DatasetError, match='"labels" must map each class name to its value'):
        folder_dataset(tmp_path / "data")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="no dataset folder"):
        folder_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match="imagesTr"):
        folder_dataset(tmp_path)
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    with pytest.raises(DatasetError, match="no image/label pairs"):
        folder_dataset(tmp_path)


@pytest.mark.parametrize("count", [2, 3, 10, 41])
def test_split_is_by_case_disjoint_and_reproducible(count):
    names = [f"case_{n}" for n in range(count)]
    train, validation = split_cases(names, 0.2, seed=4)
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(names)
    assert len(validation) == max(1, round(count * 0.2))
    assert split_cases(list(reversed(names)), 0.2, seed=4) == (train, validation)
    assert split_cases(names, 0.0, seed=4) == (sorted(names), [])


def test_ct_is_clipped_to_its_window_and_scaled():
    normalization = normalization_for("CT", (-1000, 1000))
    assert normalization == {"method": "ct-window", "low": -1000.0, "high": 1000.0}
    values = normalize(np.array([-3000, -1000, 0, 500, 1000, 3000], np.int16), normalization)
    np.testing.assert_allclose(values, [0, 0, 0.5, 0.75, 1, 1])
    assert values.dtype == np.float32


def test_mr_is_scaled_by_its_own_percentiles():
    rng = np.random.default_rng(0)
    array = rng.gamma(2.0, 300.0, (4, 30, 30)).astype(np.float32)
    normalization = normalization_for("MR")
    low, high = np.percentile(array, [0.5, 99.5])
    expected = np.clip((array - low) / (high - low), 0, 1)
    np.testing.assert_allclose(normalize(array, normalization), expected, rtol=1e-5, atol=1e-6)
    # a scanner with ten times the gain gives the same network input
    np.testing.assert_allclose(normalize(array * 10, normalization), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(40, 60), (60, 40), (50, 50)])
def test_network_size_and_back_lands_on_the_input_grid(shape):
    rng = np.random.default_rng(1)
    labels = torch.from_numpy(np.kron(rng.integers(0, 3, (shape[0] // 10, shape[1] // 10)),
                                      np.ones((10, 10), np.int64)))[None]
    side = max(shape)
    # At the padded side nothing is resampled: the round trip is exact.
    exact = labels_to_network(labels, side)
    one_hot = torch.nn.functional.one_hot(exact, 3).movedim(-1, 1).float()
    assert torch.equal(from_network(one_hot, shape).argmax(1), labels)
    # Resized to another size, blocks of 10 pixels survive except at their edges.
    resized = torch.nn.functional.one_hot(labels_to_network(labels, 32), 3).movedim(-1, 1).float()
    back = from_network(resized * 10, shape).argmax(1)
    assert back.shape == labels.shape
    assert (back == labels).float().mean() > 0.9


@pytest.mark.parametrize("shape, pixel_size, canvas", [
    ((40, 60), None, (60, 60)), ((40, 60), (0.7, 0.7), (60, 60)),
    ((40, 40), (1.0, 2.0), (80, 40)),      # 40 x 80 mm: 80 rows of 1 mm, 40 columns of 2 mm
    ((40, 40), (2.0, 1.0), (40, 80)),
    ((100, 30), (1.0, 2.0), (100, 50)),    # 100 x 60 mm: already the taller; columns padded to 100 mm
    ((33, 20), (1.5, 0.5), (33, 99)),
])
def test_the_canvas_is_square_in_mm(shape, pixel_size, canvas):
    assert padded_shape(shape, pixel_size) == canvas
    rows, columns = canvas
    if pixel_size:
        assert rows * pixel_size[0] == pytest.approx(columns * pixel_size[1], abs=max(pixel_size))


@pytest.mark.parametrize("pixel_size", [(1.0, 2.0), (2.0, 1.0), (0.6, 1.5)])
def test_non_square_pixels_go_to_the_network_and_back_onto_the_input_grid(pixel_size):
    """A disc of 12 mm radius reaches the network round, and its answer lands back on the
    input's pixels."""
    shape = (48, 40)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    disc = ((yy - 24) * pixel_size[0]) ** 2 + ((xx - 20) * pixel_size[1]) ** 2 <= 12 ** 2
    labels = torch.from_numpy(disc.astype(np.int64))[None]
    seen = labels_to_network(labels, 64, pixel_size)[0].numpy().astype(bool)
    rows, columns = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    assert abs(len(rows) - len(columns)) <= 1, (len(rows), len(columns))
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(seen.astype(np.int64))[None], 2).movedim(-1, 1).float()
    back = from_network(one_hot * 10, shape, pixel_size).argmax(1)[0].numpy().astype(bool)
    assert back.shape == shape and (back == disc).mean() > 0.97
    image = to_network(labels[:, None].float(), 64, pixel_size)[0, 0].numpy() > 0.5
    assert (image == seen).mean() > 0.97


def test_the_shipped_cardiac_model_segments_pixels_twice_as_wide_as_tall():
    """Helpers opened a cardiac MR of 3.2 x 1.6 mm pixels: a canvas square in pixels showed the
    models the heart squashed 2:1, and cardiac_ce drew nothing (Dice 0.00 on each class, 0.90
    / 0.79 / 0.92 on the same image with square pixels). Padded square in mm: the same Dice."""
    from segview.core.metrics import ConfusionMatrix
    from segview.core.phantoms import make_phantom
    from segview.core.volume import Volume
    from segview.ml.inference import Predictor
    from segview.resources import shipped_models

    predictor = Predictor.from_checkpoint(shipped_models()["cardiac_ce"], device="cpu")
    case = make_phantom("cardiac", 1000)
    volume = case.volume
    dice = {}
    for step in (1, 2):
        thinned = Volume(volume.array[:, :, ::step].copy(), (volume.spacing[0] * step, *volume.spacing[1:]),
                         volume.origin, volume.direction, volume.modality)
        predicted = predictor.predict_volume(thinned)
        dice[step] = ConfusionMatrix.from_arrays(predicted, case.labels[:, :, ::step], 4).scores().dice[1:]
    assert np.all(dice[2] >= dice[1] - 0.03), dice


def test_padding_uses_the_darkest_value_not_a_bright_edge():
    image = torch.full((1, 1, 20, 30), 0.8)
    image[..., 5, 5] = 0.1
    padded = to_network(image, 30)
    assert padded.shape == (1, 1, 30, 30)
    assert torch.all(padded[..., 20:, :] == 0.1)


def test_augmentation_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(2)
    labels = torch.from_numpy(np.kron(rng.integers(0, 4, (4, 6, 6)), np.ones((1, 8, 8), np.int64)))
    image = labels[:, None].float()  # the image spells out its own labels
    generator = torch.Generator().manual_seed(0)
    warped_image, warped_labels = augment(image, labels, generator, intensity=0, contrast=0, noise=0)
    assert warped_labels.shape == labels.shape and warped_labels.dtype == torch.int64
    assert not torch.equal(warped_labels, labels)  # something did move
    # Bilinear values equal the nearest label wherever the neighbourhood is uniform.
    agree = (warped_image[:, 0].round().long() == warped_labels).float().mean()
    assert agree > 0.9


def test_augmentation_is_reproducible_from_its_generator():
    images, labels = torch.rand(3, 1, 16, 16), torch.randint(0, 2, (3, 16, 16))
    first = augment(images, labels, torch.Generator().manual_seed(5))
    second = augment(images, labels, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_classes_keep_the_label_files_colours_beside_dataset_json_names(cardiac_folder):
    """A tester's model trained on a folder showed generic colours, not the dataset's."""
    from segview.core.io import load_classes

    saved = load_classes(cardiac_folder / "labelsTr" / "cardiac_000.nii.gz")
    assert saved  # the phantom writes its colours beside the labels
    classes = folder_dataset(cardiac_folder).classes
    assert [(c.name, c.color) for c in classes[1:]] == [(c.name, c.color) for c in saved if c.value][:3]
