"""State dicts from elsewhere: each network built here (MONAI's own classes, milesial's
layout written out key by key with a functional forward), saved as its users save it,
imported, and compared with the source; bad files refused with one clear line; pickles
that would run code never run."""
import os
import pickle
import re

import pytest
import torch
from monai.networks.nets import BasicUNet
from monai.networks.nets import UNet as MonaiReferenceUNet
from safetensors.torch import save_file
from torch.nn import functional as F

from segview.core.volume import Volume
from segview.ml.checkpoint import CheckpointError, load_checkpoint, modality_mismatch, read_metadata
from segview.ml.importers import import_state_dict, read_state_dict
from segview.ml.inference import Predictor
from segview.ml.unet import UNet

SIZE = 64
CLASSES = ["background", "liver", "tumour"]


def _randomise_norm_statistics(network: torch.nn.Module) -> torch.nn.Module:
    """Batch-norm running statistics away from 0 and 1, so that eval mode matters."""
    generator = torch.Generator().manual_seed(1)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return network.eval()


# -- milesial/Pytorch-UNet, written out from its unet_model.py / unet_parts.py ----------

def _milesial_state_dict(bilinear: bool, classes: int = 3, base: int = 4, bias: bool = False) -> dict:
    """Random weights under milesial's keys: inc, down1-4, up1-4, outc (widths base..16 base;
    bilinear halves the bottleneck and the decoder and gives DoubleConv a middle width)."""
    generator = torch.Generator().manual_seed(0)
    factor = 2 if bilinear else 1
    w = [base * 2**k for k in range(5)]
    state = {}

    def double_conv(prefix, c_in, c_out, c_mid=None):
        c_mid = c_mid or c_out
        for index, (a, b) in ((0, (c_in, c_mid)), (3, (c_mid, c_out))):
            state[f"{prefix}.double_conv.{index}.weight"] = torch.randn(b, a, 3, 3, generator=generator) * 0.3
            if bias:
                state[f"{prefix}.double_conv.{index}.bias"] = torch.randn(b, generator=generator) * 0.1
            norm = f"{prefix}.double_conv.{index + 1}"
            state[f"{norm}.weight"] = torch.rand(b, generator=generator) + 0.5
            state[f"{norm}.bias"] = torch.randn(b, generator=generator) * 0.1
            state[f"{norm}.running_mean"] = torch.randn(b, generator=generator) * 0.1
            state[f"{norm}.running_var"] = torch.rand(b, generator=generator) + 0.5
            state[f"{norm}.num_batches_tracked"] = torch.tensor(7)

    double_conv("inc", 1, w[0])
    for k, (c_in, c_out) in enumerate([(w[0], w[1]), (w[1], w[2]), (w[2], w[3]), (w[3], w[4] // factor)], 1):
        double_conv(f"down{k}.maxpool_conv.1", c_in, c_out)
    for k, (c_in, c_out) in enumerate([(w[4], w[3] // factor), (w[3], w[2] // factor),
                                       (w[2], w[1] // factor), (w[1], w[0])], 1):
        if bilinear:
            double_conv(f"up{k}.conv", c_in, c_out, c_in // 2)
        else:
            state[f"up{k}.up.weight"] = torch.randn(c_in, c_in // 2, 2, 2, generator=generator) * 0.3
            state[f"up{k}.up.bias"] = torch.randn(c_in // 2, generator=generator) * 0.1
            double_conv(f"up{k}.conv", c_in, c_out)
    state["outc.conv.weight"] = torch.randn(classes, w[0], 1, 1, generator=generator)
    state["outc.conv.bias"] = torch.randn(classes, generator=generator)
    return state


def _milesial_forward(state: dict, x: torch.Tensor, bilinear: bool) -> torch.Tensor:
    """milesial's forward, functionally, straight from the state dict (eval mode)."""
    def double_conv(prefix, x):
        for index in (0, 3):
            x = F.conv2d(x, state[f"{prefix}.double_conv.{index}.weight"],
                         state.get(f"{prefix}.double_conv.{index}.bias"), padding=1)
            norm = f"{prefix}.double_conv.{index + 1}"
            x = F.relu(F.batch_norm(x, state[f"{norm}.running_mean"], state[f"{norm}.running_var"],
                                    state[f"{norm}.weight"], state[f"{norm}.bias"], training=False))
        return x

    skips = [double_conv("inc", x)]
    for k in range(1, 5):
        skips.append(double_conv(f"down{k}.maxpool_conv.1", F.max_pool2d(skips[-1], 2)))
    x = skips.pop()
    for k in range(1, 5):
        skip = skips.pop()
        if bilinear:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.conv_transpose2d(x, state[f"up{k}.up.weight"], state[f"up{k}.up.bias"], stride=2)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = double_conv(f"up{k}.conv", torch.cat([skip, F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])], 1))
    return F.conv2d(x, state["outc.conv.weight"], state["outc.conv.bias"])


# -- every architecture: imported output equals the source's ----------------------------

def _monai_unet(**options):
    torch.manual_seed(0)
    return _randomise_norm_statistics(MonaiReferenceUNet(2, 1, 3, **options))


SOURCES = {
    "monai-unet residual batch": ("monai-unet", lambda: _monai_unet(
        channels=(4, 8, 16), strides=(2, 2), num_res_units=2, norm="batch"), None),
    "monai-unet plain defaults": ("monai-unet", lambda: _monai_unet(
        channels=(4, 8, 16, 32), strides=(2, 2, 2)), None),
    "monai-unet strides of 1 read from the residual shortcuts": ("monai-unet", lambda: _monai_unet(
        channels=(4, 8, 8, 16), strides=(1, 2, 1), num_res_units=1), None),  # a 1x1 shortcut and none
    "monai-unet strides given": ("monai-unet", lambda: _monai_unet(
        channels=(4, 8, 16), strides=(2, 1), num_res_units=1, act="relu", norm=("instance", {"affine": True})),
        {"strides": [2, 1]}),
    "monai-basicunet": ("monai-basicunet", lambda: BasicUNet(2, 1, 3, features=(4, 4, 8, 8, 16, 4)).eval(), None),
    "monai-basicunet batch norm": ("monai-basicunet", lambda: _randomise_norm_statistics(
        BasicUNet(2, 1, 3, features=(4, 8, 8, 16, 16, 8), norm="batch")), None),
    "segview-unet": ("segview-unet", lambda: _randomise_norm_statistics(UNet(1, 3, 4, 3, norm="batch")), None),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_imported_network_computes_what_the_source_computes(name, tmp_path):
    arch, build, arch_args = SOURCES[name]
    source = build()
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    result = import_state_dict(tmp_path / "weights.pth", arch, CLASSES, "CT", tmp_path / "model.safetensors",
                               input_size=SIZE, arch_args=arch_args)
    image = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    loaded, meta = load_checkpoint(result.path)
    with torch.no_grad():
        expected = source(image)
        torch.testing.assert_close(loaded(image), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(result.model(image), expected, atol=1e-5, rtol=0)
    assert meta["imported"]["arch"] == arch and meta["preprocessing"]["modality"] == "CT"


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_milesial_state_dicts_import_in_both_upsampling_variants(bilinear, bias, tmp_path):
    state = _milesial_state_dict(bilinear, bias=bias)
    # milesial's train.py stores the mask values in the state dict it saves
    torch.save({**state, "mask_values": [0, 1, 2]}, tmp_path / "checkpoint_epoch5.pth")
    result = import_state_dict(tmp_path / "checkpoint_epoch5.pth", "milesial-unet", CLASSES, "MR",
                               tmp_path / "model.safetensors", input_size=SIZE)
    assert result.arguments == {"in_channels": 1, "num_classes": 3, "bilinear": bilinear,
                                "base_channels": 4, "bias": bias}
    assert any("mask_values" in note for note in result.notes)
    image = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(result.model(image), _milesial_forward(state, image, bilinear),
                                   atol=1e-5, rtol=1e-5)


def test_hyperparameters_come_from_the_shapes(tmp_path):
    source = _monai_unet(channels=(4, 8, 16, 32), strides=(2, 2, 2), num_res_units=2, kernel_size=5,
                         up_kernel_size=3, norm="batch")
    torch.save(source.state_dict(), tmp_path / "w.pth")
    result = import_state_dict(tmp_path / "w.pth", "monai-unet", CLASSES, "CT", tmp_path / "m.safetensors",
                               input_size=SIZE)
    assert {k: result.arguments[k] for k in ("channels", "num_res_units", "kernel_size", "norm", "act")} == {
        "channels": [4, 8, 16, 32], "num_res_units": 2, "kernel_size": 5, "norm": "batch", "act": "prelu"}
    assert any("strides" in note for note in result.notes)  # what the weights cannot show is said
    assert read_metadata(tmp_path / "m.safetensors")["architecture"]["name"] == "MonaiUNet"


def test_safetensors_wrapped_and_data_parallel_state_dicts(tmp_path):
    source = BasicUNet(2, 1, 3, features=(4, 4, 8, 8, 16, 4)).eval()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "w.safetensors")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               tmp_path / "lightning.ckpt")
    image = torch.randn(1, 1, SIZE, SIZE)
    for weights in ("w.safetensors", "lightning.ckpt"):
        result = import_state_dict(tmp_path / weights, "monai-basicunet", CLASSES, "MR",
                                   tmp_path / f"{weights}.safetensors", input_size=SIZE)
        with torch.no_grad():
            torch.testing.assert_close(result.model(image), source(image), atol=1e-5, rtol=0)


def test_written_checkpoint_carries_classes_modality_size_and_window(tmp_path):
    torch.save(UNet(1, 3, 4, 2).state_dict(), tmp_path / "w.pt")
    import_state_dict(tmp_path / "w.pt", "segview-unet", CLASSES, "CT", tmp_path / "m.safetensors",
                      input_size=96, ct_window=(-200, 300))
    meta = read_metadata(tmp_path / "m.safetensors")
    assert [c["name"] for c in meta["classes"]] == CLASSES
    assert meta["preprocessing"] == {"input_size": [96, 96], "modality": "CT",
                                     "normalization": {"method": "ct-window", "low": -200.0, "high": 300.0}}
    assert len(meta["imported"]["sha256"]) == 64
    predictor = Predictor.from_checkpoint(tmp_path / "m.safetensors", "cpu", runtime="torch")
    assert predictor.input_size == 96 and predictor.num_classes == 3
    # info tells what import recorded, not a training's placeholders ("loss ?", "? cases").
    from segview.cli.models import checkpoint_text

    text = checkpoint_text("m.safetensors", "0" * 64, meta)
    assert f"imported     segview-unet weights from w.pt (sha256 {meta['imported']['sha256']})" in text
    assert "?" not in text and "trained on" not in text


# -- refused, one clear line each -------------------------------------------------------

@pytest.fixture
def monai_weights(tmp_path):
    source = _monai_unet(channels=(4, 8, 16), strides=(2, 2))
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    return path, source.state_dict()


def _import(path, tmp_path, arch="monai-unet", classes=CLASSES, **options):
    return import_state_dict(path, arch, classes, "CT", tmp_path / "out.safetensors", input_size=SIZE, **options)


def test_a_missing_key_is_named(monai_weights, tmp_path):
    path, state = monai_weights
    del state["model.1.submodule.2.conv.bias"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"1 missing \(model\.1\.submodule\.2\.conv\.bias\)") as error:
        _import(path, tmp_path)
    assert "\n" not in str(error.value) and not (tmp_path / "out.safetensors").exists()


def test_a_wrong_shape_is_named_with_both_shapes(monai_weights, tmp_path):
    path, state = monai_weights
    state["model.1.submodule.0.conv.bias"] = torch.zeros(9)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wrong shape \(model\.1\.submodule\.0\.conv\.bias: \(9,\), "
                                              r"expected \(8,\)\)"):
        _import(path, tmp_path)


def test_a_wrong_width_is_blamed_on_its_own_tensor_not_on_the_healthy_ones(monai_weights, tmp_path):
    """A tester's one conv weight of 17 channels among 16s: 28 healthy tensors were named."""
    path, state = monai_weights
    key = "model.1.submodule.0.conv.weight"
    state[key] = torch.zeros(9, *state[key].shape[1:])
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"1 of the wrong shape \({re.escape(key)}: \(9, 4, 3, 3\), "
                                              r"expected \(8, 4, 3, 3\)\)"):
        _import(path, tmp_path)


def test_a_class_count_that_differs_from_the_outputs(monai_weights, tmp_path):
    path, _ = monai_weights
    with pytest.raises(CheckpointError, match="3 outputs but --classes names 2 .background, liver."):
        _import(path, tmp_path, classes=["background", "liver"])


def test_weights_of_another_architecture(monai_weights, tmp_path):
    path, _ = monai_weights
    with pytest.raises(CheckpointError, match="lack the key inc.double_conv.0.weight, which a milesial-unet has "
                                              r".*; they look like a monai-unet state dict: pass --arch monai-unet$"):
        _import(path, tmp_path, arch="milesial-unet")


def test_a_key_missing_in_the_middle_is_named_not_taken_for_fewer_levels(tmp_path):
    """One deleted encoder weight cut the inferred network short: 14 keys 'not in a
    monai-unet' and a wrong width were reported instead of the one missing key."""
    for residual, key in ((0, "model.1.submodule.0.conv.weight"),
                          (2, "model.1.submodule.1.submodule.0.conv.unit0.conv.weight")):
        state = _monai_unet(channels=(4, 8, 16, 32), strides=(2, 2, 2), num_res_units=residual).state_dict()
        del state[key]
        torch.save(state, tmp_path / "w.pth")
        with pytest.raises(CheckpointError, match=rf"'channels': \[4, 8, 16, 32\].*: 1 missing \({re.escape(key)}\)$"):
            _import(tmp_path / "w.pth", tmp_path)


def _basic_unet(features=(4, 4, 8, 8, 16, 4)):
    return BasicUNet(2, 1, 3, features=features)


# (source network, --arch, --arch-args the user got wrong, what the message must say)
CONTRADICTED = {
    "one level fewer": (lambda: _monai_unet(channels=(4, 8, 16, 32), strides=(2, 2, 2)), "monai-unet",
                        {"channels": [4, 8, 16]}, r"channels \[4, 8, 16, 32\] \(4 levels\), not "
                                                  r"\[4, 8, 16\] \(3 levels\)"),
    "one level more": (lambda: _monai_unet(channels=(4, 8, 16), strides=(2, 2)), "monai-unet",
                       {"channels": [4, 8, 16, 32], "strides": [2, 2, 2]},
                       r"channels \[4, 8, 16\] \(3 levels\) and strides \[2, 2\] \(3 levels\), not "
                       r"\[4, 8, 16, 32\] \(4 levels\) and \[2, 2, 2\] \(4 levels\)"),
    "other widths": (lambda: _monai_unet(channels=(4, 8, 16), strides=(2, 2)), "monai-unet",
                     {"channels": [8, 16, 32]}, r"channels \[4, 8, 16\], not \[8, 16, 32\]"),
    "a stride of 1 on a residual network": (
        lambda: _monai_unet(channels=(4, 8, 16), strides=(2, 2), num_res_units=2), "monai-unet",
        {"strides": [2, 1]}, r"strides \[2, 2\], not \[2, 1\]"),
    "one stride too few": (lambda: _monai_unet(channels=(4, 8, 16, 32), strides=(2, 2, 2)), "monai-unet",
                           {"strides": [2, 2]}, r"strides \[2, 2, 2\] \(4 levels\), not \[2, 2\] \(3 levels\)"),
    "residual units": (lambda: _monai_unet(channels=(4, 8, 16), strides=(2, 2), num_res_units=2), "monai-unet",
                       {"num_res_units": 1}, "num_res_units 2, not 1"),
    "modalities": (lambda: MonaiReferenceUNet(2, 4, 3, channels=(4, 8, 16), strides=(2, 2)), "monai-unet",
                   {"in_channels": 1}, "in_channels 4, not 1"),
    "kernel size": (lambda: _monai_unet(channels=(4, 8, 16), strides=(2, 2)), "monai-unet",
                    {"kernel_size": 5}, "kernel_size 3, not 5"),
    "activation": (lambda: _monai_unet(channels=(4, 8, 16), strides=(2, 2)), "monai-unet",
                   {"act": "relu"}, 'act "prelu", not "relu"'),
    "basicunet features": (_basic_unet, "monai-basicunet", {"features": [4, 4, 8, 8, 16, 8]},
                           r"features \[4, 4, 8, 8, 16, 4\], not \[4, 4, 8, 8, 16, 8\]"),
}


@pytest.mark.parametrize("case", sorted(CONTRADICTED))
def test_arch_args_the_weights_contradict_are_named_with_the_weights_values(case, tmp_path):
    build, arch, arch_args, expected = CONTRADICTED[case]
    torch.save(build().state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=f"these weights are a {arch} with {expected} as --arch-args says; "
                                              f"leave {' and '.join(arch_args)} out of --arch-args") as error:
        _import(tmp_path / "w.pth", tmp_path, arch=arch, arch_args=arch_args)
    assert "\n" not in str(error.value) and not (tmp_path / "out.safetensors").exists()


def test_a_class_count_given_in_arch_args_is_checked_against_the_weights(monai_weights, tmp_path):
    path, _ = monai_weights
    with pytest.raises(CheckpointError, match="num_classes 3, not 2 as --arch-args says"):
        _import(path, tmp_path, classes=["background", "liver"], arch_args={"num_classes": 2})


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "net.", "network.", "model.module."])
def test_the_prefix_of_a_wrapper_is_removed(prefix, monai_weights, tmp_path):
    """MONAI UNet's own keys start 'model.': a Lightning module's 'model.' comes before it."""
    path, state = monai_weights
    torch.save({prefix + k: v for k, v in state.items()}, path)
    result = _import(path, tmp_path)
    assert f"removed the prefix {prefix!r} of every key" in result.notes


def test_training_checkpoints_give_the_weights_they_hold(monai_weights, tmp_path):
    path, state = monai_weights
    optimizer = torch.optim.Adam(_monai_unet(channels=(4, 8, 16), strides=(2, 2)).parameters())
    lightning = {"epoch": 3, "global_step": 30, "state_dict": {f"model.{k}": v for k, v in state.items()},
                 "optimizer_states": [optimizer.state_dict()], "hyper_parameters": {"lr": 1e-3}}
    for name, checkpoint in (("lightning.ckpt", lightning), ("ema.pth", {"ema": state, "epoch": 3}),
                             ("model.pth", {"model": state, "optimizer": optimizer.state_dict()})):
        torch.save(checkpoint, tmp_path / name)
        assert _import(tmp_path / name, tmp_path).arguments["channels"] == [4, 8, 16]
    torch.save({"ema": state, "last": state}, tmp_path / "two.pth")
    with pytest.raises(CheckpointError, match=r"several sets of weights \(ema, last\); .*checkpoint\['ema'\]"):
        _import(tmp_path / "two.pth", tmp_path)
    # EMA weights beside the model's: which one is imported is the person's choice, not 'model' unsaid
    torch.save({"model": state, "ema": {k: v + 0.01 for k, v in state.items()}, "epoch": 3}, tmp_path / "ema2.pth")
    with pytest.raises(CheckpointError, match=r"several sets of weights \(model, ema\); .*checkpoint\['model'\]"):
        _import(tmp_path / "ema2.pth", tmp_path)


def test_truncated_text_and_onnx_files_are_named_as_such(monai_weights, tmp_path):
    path, state = monai_weights
    whole = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.pth").write_text("hello")
    torch.save({**state, "pad": torch.zeros(400_000)}, tmp_path / "big.pth")  # large enough for torch's zip
    big = (tmp_path / "big.pth").read_bytes()  # reader to say "failed finding central directory", then more
    (tmp_path / "big_cut.pth").write_bytes(big[: len(big) // 2])
    for name in ("cut.pth", "notes.pth", "big_cut.pth"):
        with pytest.raises(CheckpointError,
                           match="not a readable PyTorch weights file .*truncated or damaged") as error:
            _import(tmp_path / name, tmp_path)
        # torch's own reason, whole: not cut mid-sentence ("... there is a high); it may be")
        assert "there is a high" not in str(error.value)
    network = _monai_unet(channels=(4, 8, 16), strides=(2, 2))
    torch.onnx.export(network, torch.zeros(1, 1, SIZE, SIZE), tmp_path / "model.pth", dynamo=False)
    with pytest.raises(CheckpointError, match="model.pth is an ONNX model, not a PyTorch state dict; import the "
                                              "state dict it was exported from"):
        _import(tmp_path / "model.pth", tmp_path)


def test_unknown_architecture_arguments_are_refused(monai_weights, tmp_path):
    path, _ = monai_weights
    with pytest.raises(CheckpointError, match="takes no argument _target_"):
        _import(path, tmp_path, arch_args={"_target_": "os.system"})


def test_non_finite_weights_and_three_channel_networks(tmp_path):
    state = UNet(1, 3, 4, 2).state_dict()
    state["head.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="head.bias holds NaN"):
        _import(tmp_path / "nan.pth", tmp_path, arch="segview-unet")
    torch.save(UNet(3, 3, 4, 2).state_dict(), tmp_path / "rgb.pth")
    with pytest.raises(CheckpointError, match="takes 3 input channels"):
        _import(tmp_path / "rgb.pth", tmp_path, arch="segview-unet")


def test_a_whole_pickled_model_is_refused_with_how_to_save_a_state_dict(tmp_path):
    torch.save(UNet(1, 3, 4, 2), tmp_path / "model.pth")  # the whole module, not its state dict
    with pytest.raises(CheckpointError, match=r"torch\.save\(model\.state_dict\(\), 'weights\.pth'\)"):
        _import(tmp_path / "model.pth", tmp_path, arch="segview-unet")


class _CreatesAFile:
    """Unpickling this would call open(target, "w"): the file would appear."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_never_executed(writer, tmp_path):
    target = tmp_path / "pwned.txt"
    weights = tmp_path / "weights.pth"
    payload = {"head.weight": torch.zeros(3, 4, 1, 1), "evil": _CreatesAFile(target)}
    if writer == "torch.save":
        torch.save(payload, weights)
    else:
        with open(weights, "wb") as file:
            pickle.dump(payload, file)
    with pytest.raises(CheckpointError, match="does not unpickle"):
        read_state_dict(weights)
    with pytest.raises(CheckpointError):
        _import(weights, tmp_path, arch="segview-unet")
    # the paths that load models for predict, evaluate and the window refuse it unread
    with pytest.raises(CheckpointError, match="pickled"):
        Predictor.from_checkpoint(weights)
    assert not target.exists() and not os.path.exists(tmp_path / "out.safetensors")


# -- modality ---------------------------------------------------------------------------

@pytest.mark.parametrize("trained, image, guessed, expected", [
    ("CT", "CT", False, None),
    ("MR", "mr", False, None),
    ("MR", "CT", False, "trained on MR images but the image is CT"),
    ("CT", "MR", True, "trained on CT images but the image looks like MR (guessed from its intensities)"),
    ("CT", "", False, None),     # an image of unknown modality
    (None, "CT", False, None),   # a checkpoint that does not say
])
def test_modality_mismatch(trained, image, guessed, expected):
    meta = {"preprocessing": {"modality": trained} if trained else {}}
    volume = Volume(torch.zeros(2, 4, 4).numpy(), modality=image, meta={"modality_guessed": guessed})
    message = modality_mismatch(meta, volume)
    assert (message is None) == (expected is None)
    if expected:
        assert expected in message
