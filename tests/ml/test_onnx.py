"""ONNX export and ONNX Runtime: the exported model gives torch's labels, on any batch and
size, carries the checkpoint's metadata, and loads as a model wherever a checkpoint does."""
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from monai.networks.nets import BasicUNet
from monai.networks.nets import UNet as MonaiReferenceUNet

from segview.core.phantoms import CARDIAC_CLASSES, make_phantom
from segview.ml.checkpoint import CheckpointError, classes_to_metadata, read_metadata, save_checkpoint
from segview.ml.importers import import_state_dict
from segview.ml.inference import Predictor
from segview.ml.milesial import MilesialUNet
from segview.ml.checkpoint import slice_orientation
from segview.ml.onnx_model import export_onnx, load_onnx
from segview.ml.unet import UNet

META = {"classes": classes_to_metadata(CARDIAC_CLASSES),
        "preprocessing": {"input_size": [64, 64], "modality": "MR", "normalization": {
            "method": "percentile", "low_percentile": 0.5, "high_percentile": 99.5}}}


def _decided(logits: torch.Tensor) -> torch.Tensor:
    """Pixels whose top two logits differ by more than float rounding (elsewhere either
    label is right and runtimes may legitimately differ)."""
    top2 = logits.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]) > 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained-looking segview UNet (moved batch-norm statistics), its checkpoint and ONNX export."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = UNet(1, 4, base_channels=4, depth=3, norm="batch")
    model.train()
    model(torch.randn(4, 1, 64, 64))
    model.eval()
    with torch.no_grad():  # logits as far apart as a trained network's, so ties are rare
        model.head.weight.mul_(10)
        model.head.bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))  # no ties where features are all 0
    checkpoint = save_checkpoint(folder / "model.safetensors", model, META)
    return model, checkpoint, export_onnx(checkpoint, folder / "model.onnx")


def test_metadata_travels_in_the_onnx_model(exported):
    _, checkpoint, path = exported
    properties = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = read_metadata(checkpoint)
    # the checkpoint's, with how slices are fed said outright (its orientation, by segview's rule)
    written = json.loads(properties["segview"])
    fed = written["preprocessing"]
    assert fed.pop("orientation") == slice_orientation(meta) and "square in mm" in fed.pop("canvas")
    assert written == meta
    assert properties["classes"] == "background, right ventricle, myocardium, left ventricle"
    assert slice_orientation(read_metadata(path)) == slice_orientation(meta)


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 1, 64, 64), (2, 1, 50, 72)])
def test_onnx_runtime_gives_torch_labels_on_any_batch_and_size(exported, shape):
    model, _, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    image = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    (logits,) = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        expected = model(image)
    assert logits.shape == tuple(expected.shape)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-5 * float(expected.abs().max()), rtol=1e-4)
    decided = _decided(expected)
    assert decided.float().mean() > 0.99
    assert torch.equal(torch.from_numpy(logits).argmax(1)[decided], expected.argmax(1)[decided])


def test_predictor_runs_an_onnx_file_like_its_checkpoint(exported):
    _, checkpoint, path = exported
    case = make_phantom("cardiac", 5)
    from_onnx = Predictor.from_checkpoint(path)
    torch_path = Predictor.from_checkpoint(checkpoint, "cpu", runtime="torch")
    assert from_onnx.runtime == "onnxruntime" and torch_path.runtime == "torch"
    assert [c.name for c in from_onnx.classes] == [c.name for c in CARDIAC_CLASSES]
    labels = from_onnx.predict_volume(case.volume)
    normalized = torch_path.prepare(case.volume)
    for reference in torch_path.predict_slices(normalized, range(case.volume.shape[0]), want_probabilities=True):
        top2 = np.sort(reference.probabilities, axis=0)[-2:]
        decided = (top2[1] - top2[0]) > 1e-4
        np.testing.assert_array_equal(labels[reference.index][decided], reference.labels[decided])


def test_checkpoints_run_on_onnx_runtime_by_default_on_the_cpu(exported):
    _, checkpoint, _ = exported
    default = Predictor.from_checkpoint(checkpoint, "cpu")
    assert default.runtime == "onnxruntime"
    case = make_phantom("cardiac", 6)
    reference = Predictor.from_checkpoint(checkpoint, "cpu", runtime="torch").predict_volume(case.volume)
    assert (default.predict_volume(case.volume) == reference).mean() > 0.9999


def test_an_imported_monai_network_exports_too(tmp_path):
    torch.manual_seed(0)
    source = MonaiReferenceUNet(2, 1, 4, channels=(4, 8, 16), strides=(2, 2), num_res_units=1).eval()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    import_state_dict(tmp_path / "w.pth", "monai-unet", [c.name for c in CARDIAC_CLASSES], "MR",
                      tmp_path / "m.safetensors", input_size=64)
    network, meta = load_onnx(export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx"))
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = source(image)
    torch.testing.assert_close(network(image), expected, atol=1e-4, rtol=1e-4)
    assert meta["architecture"]["name"] == "MonaiUNet"
    # what another tool must do first, said outright (an import learnt the arrays as stored)
    assert meta["preprocessing"]["orientation"] == "stored"
    assert "square in mm" in meta["preprocessing"]["canvas"]


@pytest.mark.parametrize("arch, build, input_size, sizes", [
    # milesial's UNet pads inside itself, from the sizes: the graph does too, at any size
    ("milesial-unet", lambda: MilesialUNet(1, 4, base_channels=4).eval(), 64, [(64, 64), (50, 70), (37, 81)]),
    # BasicUNet pads odd sides in a traced branch: exact at its own input size of 72
    ("monai-basicunet", lambda: BasicUNet(2, 1, 4, features=(4, 4, 8, 8, 16, 4)).eval(), 72, [(72, 72)]),
])
def test_foreign_networks_export_exactly_at_their_own_sizes(arch, build, input_size, sizes, tmp_path):
    torch.manual_seed(0)
    source = build()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    import_state_dict(tmp_path / "w.pth", arch, [c.name for c in CARDIAC_CLASSES], "MR",
                      tmp_path / "m.safetensors", input_size=input_size)
    network, _ = load_onnx(export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx"))
    for height, width in sizes:
        image = torch.randn(2, 1, height, width)
        with torch.no_grad():
            torch.testing.assert_close(network(image), source(image), atol=1e-4, rtol=1e-4)


def test_onnx_files_without_segview_metadata_or_damaged_are_refused(exported, tmp_path):
    _, _, path = exported
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="no segview metadata.*segview export"):
        Predictor.from_checkpoint(tmp_path / "bare.onnx")
    (tmp_path / "damaged.onnx").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="damaged.onnx is not a readable ONNX model"):
        Predictor.from_checkpoint(tmp_path / "damaged.onnx")
    with pytest.raises(CheckpointError, match="must end in .onnx"):
        export_onnx(exported[1], tmp_path / "model.bin")
    with pytest.raises(CheckpointError, match="model.onnx is an ONNX model, not a segview checkpoint"):
        export_onnx(path, tmp_path / "again.onnx")
