"""UNet architecture: the paper's size, shapes for any input, valid padding, options."""
import pytest
import torch
from torch import nn

from segview.ml.unet import UNet


def _parameters(model):
    return sum(p.numel() for p in model.parameters())


def _paper_parameter_count(in_channels=1, num_classes=2, base=64, depth=4):
    """Counted by hand from the paper's figure: 3x3 convs with bias, 2x2 up-convs, 1x1 head."""
    def conv(c_in, c_out, k):
        return c_in * c_out * k * k + c_out
    widths = [base * 2**level for level in range(depth + 1)]
    total = conv(in_channels, widths[0], 3) + conv(widths[0], widths[0], 3)
    for low, high in zip(widths, widths[1:]):
        total += conv(low, high, 3) + conv(high, high, 3)          # contracting path
        total += conv(high, low, 2) + conv(2 * low, low, 3) + conv(low, low, 3)  # expanding
    return total + conv(widths[0], num_classes, 1)


def test_paper_configuration_has_31_million_parameters():
    model = UNet(in_channels=1, num_classes=2)
    assert _parameters(model) == _paper_parameter_count() == 31_030_658
    assert round(_parameters(model) / 1e6, 1) == 31.0


def test_layers_follow_the_paper():
    model = UNet(base_channels=64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(m.kernel_size == (3, 3) for m in convs) == 18  # two per level, 9 levels
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride) for m in ups] == [((2, 2), (2, 2))] * 4
    assert [m.out_channels for m in ups] == [512, 256, 128, 64]
    assert model.head.kernel_size == (1, 1) and model.head.out_channels == 2
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in model.modules())


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (37, 61), (1, 1), (17, 200)])
def test_any_input_size_gives_logits_of_the_same_size(size):
    model = UNet(num_classes=3, base_channels=4, depth=3).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, *size))
    assert logits.shape == (2, 3, *size)
    assert torch.isfinite(logits).all()


def test_padding_does_not_change_the_result_on_divisible_sizes():
    model = UNet(base_channels=4, depth=2).eval()
    image = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        whole = model(image)
        assert torch.equal(whole, model._forward(image))


def test_valid_padding_reproduces_the_paper_tile():
    model = UNet(base_channels=2, padding="valid").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 572, 572)).shape == (1, 2, 388, 388)
    assert model.output_size(572) == 388
    with pytest.raises(ValueError, match="572"):
        model(torch.zeros(1, 1, 570, 570))


@pytest.mark.parametrize("norm, layer", [("batch", nn.BatchNorm2d), ("instance", nn.InstanceNorm2d)])
def test_normalisation_layers_replace_conv_bias(norm, layer):
    model = UNet(base_channels=4, depth=2, norm=norm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sum(isinstance(m, layer) for m in model.modules()) == len(convs)
    assert all(m.bias is None for m in convs)
    model.train()
    model(torch.randn(2, 1, 16, 16)).sum().backward()


def test_multichannel_input_and_channels_last():
    model = UNet(in_channels=3, num_classes=4, base_channels=4, depth=2).eval()
    image = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        expected = model(image)
        fast = model.to(memory_format=torch.channels_last)(image.to(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, expected, rtol=1e-4, atol=1e-4)


def test_initialisation_follows_the_paper():
    model = UNet(base_channels=64)
    conv = model.encoder[2][0]  # 3x3, 128 -> 256: N = 9 * 128 incoming nodes
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 128)) ** 0.5, rel=0.02)
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("arguments, message", [
    (dict(norm="group"), "norm"), (dict(padding="reflect"), "padding"),
    (dict(depth=0), "depth"), (dict(base_channels=2.5), "base_channels"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        UNet(**arguments)
