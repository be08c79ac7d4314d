"""The model zoo for the PyTorch fidelity tests.

Each make_<name>(seed=0) returns (model, example_input): random weights
under a fixed seed, never downloaded. Batch-norm running statistics and the
affine parameters of every norm are randomized too (PyTorch initializes them
to 0/1, under which a wrong fold or a swapped mean/variance would go
unnoticed). Inputs are small to keep CI fast.
"""

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


def randomize_norms(model):
    """BN: running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5); affine
    gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1) for BN, InstanceNorm and
    GroupNorm; PReLU slopes ~ U(0.05, 0.5) (PyTorch starts them all at
    0.25, under which a misplaced channel would go unnoticed)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    return model


def _finish(model, *input_shape):
    randomize_norms(model)
    model.eval()
    return model, torch.randn(*input_shape)


def make_resnet18(seed=0):
    torch.manual_seed(seed)
    return _finish(torchvision.models.resnet18(weights=None), 1, 3, 64, 64)


def make_mobilenet_v2(seed=0):
    torch.manual_seed(seed)
    return _finish(torchvision.models.mobilenet_v2(weights=None), 1, 3, 64, 64)


def make_squeezenet1_1(seed=0):
    torch.manual_seed(seed)
    return _finish(torchvision.models.squeezenet1_1(weights=None), 1, 3, 64, 64)


def make_alexnet(seed=0):
    # 96x96 keeps features at 256x2x2; AdaptiveAvgPool2d((6, 6)) then gives
    # the 256x6x6 map that classifier.1 (9216 -> 4096) flattens.
    torch.manual_seed(seed)
    return _finish(torchvision.models.alexnet(weights=None), 1, 3, 96, 96)


class DCGANGenerator(nn.Module):
    """DCGAN-style generator: z [N, 100, 1, 1] -> image [N, 3, 32, 32]."""

    def __init__(self, nz=100, ngf=16):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),           # 4x4
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),      # 8x8
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # k3 s2 p1 gives 2H-1; output_padding=1 restores 2H.
            nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1),     # 16x16
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1),                            # 32x32
            nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z)


def make_dcgan(seed=0):
    torch.manual_seed(seed)
    return _finish(DCGANGenerator(), 1, 100, 1, 1)


# The fast-neural-style TransformerNet (pytorch/examples,
# fast_neural_style/neural_style/transformer_net.py), same layer shapes.

class ConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class UpsampleConvLayer(nn.Module):
    """Nearest upsampling then a conv, instead of a ConvTranspose2d
    (distill.pub/2016/deconv-checkerboard)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res1(y)
        y = self.res2(y)
        y = self.res3(y)
        y = self.res4(y)
        y = self.res5(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def make_transformer_net(seed=0):
    torch.manual_seed(seed)
    return _finish(TransformerNet(), 1, 3, 32, 32)


class Corners(nn.Module):
    """The layer configurations where layout bugs hide. The input is not
    square (12x16) and the flattened map is 2x3, so an H/W swap shows."""

    def __init__(self):
        super().__init__()
        self.conv_1x7 = nn.Conv2d(8, 8, (1, 7), padding=(0, 3))
        self.conv_7x1 = nn.Conv2d(8, 8, (7, 1), padding=(3, 0), bias=False)
        self.dilated = nn.Conv2d(8, 16, 3, padding=2, dilation=2)
        self.act_leaky = nn.LeakyReLU(0.2)
        self.grouped2 = nn.Conv2d(16, 16, 3, padding=1, groups=2)        # 8 channels per group
        self.grouped4 = nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False)  # 4 in, 8 out
        self.strided = nn.Conv2d(32, 16, (3, 5), stride=(2, 1), padding=(1, 2))
        self.bn = nn.BatchNorm2d(16)
        self.up_grouped = nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1,
                                             groups=2)
        self.up_dilated = nn.ConvTranspose2d(16, 8, 3, stride=1, padding=2, dilation=2,
                                             bias=False)
        self.up_asym = nn.ConvTranspose2d(8, 8, (2, 3), stride=(2, 1), padding=(0, 1))
        self.pool = nn.AdaptiveAvgPool2d((2, 3))
        self.fc_map = nn.Linear(8 * 2 * 3, 16)     # after flatten of [8, 2, 3]
        self.fc_vec = nn.Linear(16, 10, bias=False)  # on a plain vector

    def forward(self, x):
        x = self.conv_1x7(x)
        x = torch.relu(x)
        x = self.conv_7x1(x)
        x = self.act_leaky(self.dilated(x))
        x = F.relu6(self.grouped2(x))
        x = self.grouped4(x)
        x = self.bn(self.strided(x))
        x = torch.sigmoid(self.up_grouped(x))
        x = self.up_dilated(x)
        x = self.up_asym(x).tanh()
        x = torch.flatten(self.pool(x), 1)
        x = F.relu(self.fc_map(x), inplace=True)
        return self.fc_vec(x)


def make_corners(seed=0):
    torch.manual_seed(seed)
    return _finish(Corners(), 1, 8, 12, 16)


class Neurons(nn.Module):
    """GroupNorm (affine and not; 1, 4 and C groups), PReLU (1 and C slopes,
    standalone and fused into the conv before it) and every MPS neuron
    beyond ReLU's family after a conv, a transposed conv and a linear, as
    modules and as functions."""

    def __init__(self):
        super().__init__()
        self.conv_elu = nn.Conv2d(3, 16, 3, padding=1)
        self.elu = nn.ELU(alpha=0.7)
        self.gn_one = nn.GroupNorm(1, 16)                      # one group: LayerNorm-like
        self.conv_prelu_c = nn.Conv2d(16, 16, 3, padding=1)
        self.prelu_c = nn.PReLU(16)                            # fused, one slope per channel
        self.gn_four = nn.GroupNorm(4, 16, affine=False)
        self.prelu_alone = nn.PReLU()                          # standalone, one slope
        self.conv_prelu_1 = nn.Conv2d(16, 16, 1)
        self.prelu_1 = nn.PReLU()                              # fused, one slope
        self.conv_hsig = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.hsig = nn.Hardsigmoid()
        self.gn_c = nn.GroupNorm(16, 16, eps=1e-3)             # one channel per group
        self.prelu_alone_c = nn.PReLU(16)                      # standalone, one slope each
        self.conv_softplus = nn.Conv2d(16, 8, 3, padding=1)
        self.softplus = nn.Softplus(beta=2.0, threshold=15.0)
        self.conv_gelu = nn.Conv2d(8, 8, 3, padding=1)
        self.gelu = nn.GELU()
        self.up_f_elu = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.conv_f_hsig = nn.Conv2d(8, 8, 1)
        self.conv_f_softplus = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.conv_f_gelu = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((2, 3))
        self.fc_prelu = nn.Linear(8 * 2 * 3, 12)
        self.fc_prelu_act = nn.PReLU(12)
        self.fc_gelu = nn.Linear(12, 6)

    def forward(self, x):
        x = self.gn_one(self.elu(self.conv_elu(x)))
        x = self.prelu_alone(self.gn_four(self.prelu_c(self.conv_prelu_c(x))))
        x = self.prelu_1(self.conv_prelu_1(x))
        x = self.prelu_alone_c(self.gn_c(self.hsig(self.conv_hsig(x))))
        x = self.gelu(self.conv_gelu(self.softplus(self.conv_softplus(x))))
        x = F.elu(self.up_f_elu(x), alpha=1.3)
        x = F.hardsigmoid(self.conv_f_hsig(x))
        x = F.softplus(self.conv_f_softplus(x), beta=0.5, threshold=30.0)
        x = F.gelu(self.conv_f_gelu(x))
        x = self.fc_prelu_act(self.fc_prelu(torch.flatten(self.pool(x), 1)))
        return F.gelu(self.fc_gelu(x))


def make_neurons(seed=0):
    torch.manual_seed(seed)
    return _finish(Neurons(), 1, 3, 10, 14)


MODELS = {
    "resnet18": make_resnet18,
    "mobilenet_v2": make_mobilenet_v2,
    "squeezenet1_1": make_squeezenet1_1,
    "alexnet": make_alexnet,
    "dcgan": make_dcgan,
    "transformer_net": make_transformer_net,
    "corners": make_corners,
    "neurons": make_neurons,
}
