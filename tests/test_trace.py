"""encode_module writes real networks in the architecture language, token for token.

The modules below mimic torchvision's building blocks with plain torch, so the
test needs neither torchvision nor timm.
"""

from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gptnas.errors import GptnasError
from gptnas.language.tokens import split_condition
from gptnas.language.trace import encode_module

DATA = Path(__file__).resolve().parent.parent / "data"


def channel_shuffle(x, groups: int):
    b, c, h, w = x.size()
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


torch.fx.wrap("channel_shuffle")  # one node in the traced graph, like torchvision's


def conv_bn(cin, cout, kernel=3, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(cout, cout, 3)
        self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 128, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.avgpool(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class SqueezeExcitation(nn.Module):
    """torchvision's SE: the scale multiplies the input."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, input):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(input)))))
        return scale * input


class FunctionalSE(nn.Module):
    """timm's style: functional mean, activation as a method."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(F.relu(self.reduce(s)))
        return x * s.sigmoid()


class SENet(nn.Module):
    def __init__(self, se):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, 2, 1)
        self.se = se
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.pool(self.se(self.stem(x))))


class ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 InvertedResidual, stride 1 (split) and 2 (two branches)."""

    def __init__(self, channels, stride):
        super().__init__()
        self.stride = stride
        half = channels // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*conv_bn(channels, channels, 3, stride, groups=channels),
                                         *conv_bn(channels, half, 1), nn.ReLU())
            cin = channels
        else:
            self.branch1 = nn.Sequential()
            cin = half
        self.branch2 = nn.Sequential(*conv_bn(cin, half, 1), nn.ReLU(),
                                     *conv_bn(half, half, 3, stride, groups=half), *conv_bn(half, half, 1), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class InceptionModule(nn.Module):
    """GoogLeNet's Inception: four branches concatenated."""

    def __init__(self, cin):
        super().__init__()
        self.branch1 = nn.Sequential(*conv_bn(cin, 64, 1), nn.ReLU())
        self.branch2 = nn.Sequential(*conv_bn(cin, 96, 1), nn.ReLU(), *conv_bn(96, 128, 3), nn.ReLU())
        self.branch3 = nn.Sequential(*conv_bn(cin, 16, 1), nn.ReLU(), *conv_bn(16, 32, 3), nn.ReLU())
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), *conv_bn(cin, 32, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class NotSeriesParallel(nn.Module):
    """a feeds both c and the final concat, b only c: the Wheatstone bridge."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        a = self.a(x)
        return torch.cat([self.c(a) + self.b(x), a], 1)


BASIC = ["conv3x3", "w64", "bn", "relu", "conv3x3", "w64", "bn"]
BASIC_DOWN = ["conv3x3/s2", "w128", "bn", "relu", "conv3x3", "w128", "bn"]


def test_resnet_blocks_with_and_without_downsample():
    assert encode_module(TinyResNet(), "torchvision") == [
        "space:torchvision", "conv7x7/s2", "w64", "bn", "relu", "maxpool3x3/s2",
        "block", "(", *BASIC, "|", ")add", "relu",
        "block", "(", *BASIC_DOWN, "|", "conv1x1/s2", "w128", "bn", ")add", "relu",
        "gap", "classifier",
    ]


def test_meta_device_model_encodes_like_a_real_one():
    with torch.device("meta"):
        meta = TinyResNet()
    assert encode_module(meta, "t") == encode_module(TinyResNet(), "t")


def test_encoding_leaves_the_training_mode_alone():
    model = TinyResNet().train()
    encode_module(model, "t")
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("se", [SqueezeExcitation(64, 16), FunctionalSE(64, 16)], ids=["modules", "functional"])
def test_squeeze_excitation_is_a_mul_merge_and_the_last_linear_is_the_classifier(se):
    assert encode_module(SENet(se), "x") == [
        "space:x", "conv3x3/s2", "w64",
        "block", "(", "gap", "conv1x1", "w16", "relu", "conv1x1", "w64", "sigmoid", "|", ")mul",
        "gap", "fc", "w32", "relu", "classifier",
    ]


def test_shufflenet_units_split_into_an_empty_branch_last_and_shuffle():
    model = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), ShuffleUnit(32, 2), ShuffleUnit(32, 1))
    branch2_s2 = ["conv1x1", "w16", "bn", "relu", "dwconv3x3/s2", "bn", "conv1x1", "w16", "bn", "relu"]
    branch2_s1 = ["conv1x1", "w16", "bn", "relu", "dwconv3x3", "bn", "conv1x1", "w16", "bn", "relu"]
    assert encode_module(model, "s") == [
        "space:s", "conv3x3/s2", "w32",
        "block", "(", "dwconv3x3/s2", "bn", "conv1x1", "w16", "bn", "relu", "|", *branch2_s2, ")cat", "shuffle",
        "block", "(split", *branch2_s1, "|", ")cat", "shuffle",
    ]


def test_grouped_convolution_writes_its_groups():
    model = nn.Sequential(nn.Conv2d(3, 64, 1), nn.Conv2d(64, 128, 3, 2, 1, groups=32, dilation=1))
    assert encode_module(model, "g") == ["space:g", "conv1x1", "w64", "gconv3x3/s2", "w128", "g32"]


def test_inception_branches_keep_their_order():
    model = nn.Sequential(nn.Conv2d(3, 192, 3), InceptionModule(192), nn.MaxPool2d(3, 2), InceptionModule(256))
    inception = ["(", "conv1x1", "w64", "bn", "relu",
                 "|", "conv1x1", "w96", "bn", "relu", "conv3x3", "w128", "bn", "relu",
                 "|", "conv1x1", "w16", "bn", "relu", "conv3x3", "w32", "bn", "relu",
                 "|", "maxpool3x3", "conv1x1", "w32", "bn", "relu", ")cat"]
    assert encode_module(model, "i") == [
        "space:i", "conv3x3", "w192", "block", *inception, "maxpool3x3/s2", "block", *inception,
    ]


def test_nested_forks_recurse():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

        def forward(self, x):
            y = self.a(x)
            return torch.cat([y + self.b(y), x], 1)

    assert encode_module(nn.Sequential(nn.Conv2d(3, 8, 1), Nested()), "n") == [
        "space:n", "conv1x1", "w8", "block", "(", "conv3x3", "w8", "(", "conv1x1", "w8", "|", ")add", "|", ")cat",
    ]


def test_a_graph_that_is_not_series_parallel_is_refused():
    with pytest.raises(GptnasError, match="not series-parallel"):
        encode_module(NotSeriesParallel(), "x")


def test_an_unsupported_layer_is_named_not_dropped():
    with pytest.raises(GptnasError, match="PReLU"):
        encode_module(nn.Sequential(nn.Conv2d(3, 8, 1), nn.PReLU()), "x")

    class Scaled(nn.Module):
        def forward(self, x):
            return x * 2.0

    with pytest.raises(GptnasError, match="mul"):
        encode_module(nn.Sequential(nn.Conv2d(3, 8, 1), Scaled()), "x")


FINETUNE_FAMILIES = {"efficientnet": 8, "googlenet": 1, "regnet": 14, "resnet": 5, "resnext": 2, "shufflenet": 4,
                     "wide_resnet": 2}


def test_committed_corpus_files_load_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    finetune = datasets.load_dataset("json", data_files=str(DATA / "finetune_torchvision.jsonl"),
                                     split="train", cache_dir=str(tmp_path))
    pretrain = datasets.load_dataset("json", data_files=str(DATA / "pretrain_timm.jsonl.gz"),
                                     split="train", cache_dir=str(tmp_path))
    assert len(finetune) == 36
    assert Counter(finetune["family"]) == FINETUNE_FAMILIES
    assert set(finetune["source"]) == {"torchvision"} and set(pretrain["source"]) == {"timm"}
    assert len(pretrain) > len(finetune)
    for record in (finetune[0], pretrain[0]):
        words = record["text"].split()
        assert record["n_tokens"] == len(words) <= 4096
        _, architecture = split_condition(words)
        assert architecture[0] == f"space:{record['source']}" and words[-1] == "classifier"
        assert record["n_blocks"] == words.count("block")
