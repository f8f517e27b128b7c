"""ResNet-18 (torchvision, untrained) with a stem for small images."""
from __future__ import annotations

from typing import ClassVar, Sequence

from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.resnet import ResNet as TorchvisionResNet


class ResNet(TorchvisionResNet):
    """torchvision ``resnet18(weights=None)`` with a 3x3 stride-1 stem, no stem max-pool, a
    configurable base ``width`` and dropout before the final linear layer.

    The ImageNet stem (7x7 stride-2 conv + max-pool) would shrink a 28x28 image to 7x7 before
    the first residual block; the CIFAR-style stem keeps full resolution there.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"image"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        dropout: float = 0.0,
        l1: float = 0.0,
        width: int = 64,
    ):
        # exactly what torchvision.models.resnet18(weights=None, num_classes=...) builds
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_outputs)
        if len(input_shape) != 3:
            raise ValueError(f"ResNet expects images (C, H, W), got input_shape={tuple(input_shape)}")
        self.l1 = l1
        self.conv1 = nn.Conv2d(input_shape[0], width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.Identity()
        if width != 64:  # torchvision hard-codes 64 base channels; rebuild its stages at `width`
            self.inplanes = width
            self.layer1 = self._make_layer(BasicBlock, width, 2)
            self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
            self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(8 * width, num_outputs))
        # replaced convs get torchvision's initialisation, not PyTorch's default
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
