"""PyTorch module -> manifest layer fields.

One function per mapped module kind. Each returns the layer's fields (in the
order they appear in manifest.json) and the tensors to write, or raises
_Unsupported with the reason a module of a mapped type still cannot be
served (a padding mode MPS does not apply, batch statistics in eval, ...).

Field names follow PyTorch's module arguments and state_dict suffixes, as
docs/MANIFEST.md asks, so that a manifest reads like the model.
"""

from collections import OrderedDict

import torch
from torch import nn

class Kind:
    """A manifest layer kind as the exporter writes it: its PyTorch module,
    the manifest fields the kind takes and the fields that name its tensor
    files. Mirrors runtime/include/mpsb/kinds.h, which the compiler reads;
    tests/pytorch/kinds_test.py compares the two (`mpsbc kinds --json`)."""

    def __init__(self, name, module, fields, tensors, fused_activation=False):
        self.name = name
        self.module = module
        self.fields = fields
        self.tensors = tensors
        self.fused_activation = fused_activation


class ActivationKind:
    """A fused activation: its PyTorch module, its parameters as
    (PyTorch's name, PyTorch's default), and a string argument that must
    have one value because MPS computes only that form."""

    def __init__(self, name, module, params=(), option=None):
        self.name = name
        self.module = module
        self.params = params
        self.option = option


_CONV_FIELDS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                "groups", "padding_mode")
_WEIGHT_TENSORS = ("weight", "bias", "activation_weight")
_NORM_FIELDS = ("num_features", "eps", "affine", "momentum", "track_running_stats")

# The one list of mapped modules. Order matters: ConvTranspose2d is not a
# Conv2d subclass, but keep the most specific classes first so a future
# subclass relation cannot misroute.
KINDS = (
    Kind("conv_transpose2d", nn.ConvTranspose2d, _CONV_FIELDS + ("output_padding",),
         _WEIGHT_TENSORS, fused_activation=True),
    Kind("conv2d", nn.Conv2d, _CONV_FIELDS, _WEIGHT_TENSORS, fused_activation=True),
    Kind("linear", nn.Linear, ("in_features", "out_features", "input_shape"), _WEIGHT_TENSORS,
         fused_activation=True),
    # The activation after a batch norm is on the norm (conv -> BN -> ReLU);
    # mpsbc --fold-batchnorm moves it onto the folded conv.
    Kind("batch_norm2d", nn.BatchNorm2d, _NORM_FIELDS + ("follows",),
         ("weight", "bias", "running_mean", "running_var", "activation_weight"),
         fused_activation=True),
    Kind("instance_norm2d", nn.InstanceNorm2d, _NORM_FIELDS, ("weight", "bias")),
    Kind("group_norm", nn.GroupNorm, ("num_groups", "num_channels", "eps", "affine"),
         ("weight", "bias")),
    Kind("prelu", nn.PReLU, ("num_parameters", "num_channels"), ("weight",)),
)

# The activations MPS fuses into a conv or linear, in kinds.h's order.
ACTIVATIONS = (
    ActivationKind("none", None),
    ActivationKind("relu", nn.ReLU),
    ActivationKind("relu6", nn.ReLU6),
    ActivationKind("leaky_relu", nn.LeakyReLU, (("negative_slope", 0.01),)),
    ActivationKind("sigmoid", nn.Sigmoid),
    ActivationKind("tanh", nn.Tanh),
    ActivationKind("elu", nn.ELU, (("alpha", 1.0),)),
    ActivationKind("hardsigmoid", nn.Hardsigmoid),
    ActivationKind("softplus", nn.Softplus, (("beta", 1.0), ("threshold", 20.0))),
    ActivationKind("gelu", nn.GELU, option=("approximate", "none")),
    ActivationKind("prelu", nn.PReLU),
)

# A fused prelu's manifest field beside "activation_weight": the PReLU
# module's num_parameters (manifest_parse.cc reads it; kinds.h's
# ActivationSpec has only float parameters).
FUSED_PRELU_FIELD = "num_parameters"

# Softplus thresholds below this are refused: MPS's SoftPlus has no
# threshold, and PyTorch's linear branch differs from it by
# log1p(exp(-threshold)) / beta, above float32 resolution below 15
# (docs/LAYERS.md).
SOFTPLUS_MIN_THRESHOLD = 15.0

MAPPED_TYPES = tuple(k.module for k in KINDS)

# Tensor roles, in the order they are listed in a layer. The names are the
# manifest fields (state_dict suffixes where PyTorch has one) and the roles
# mpsb-dump --extract accepts.
TENSOR_ROLES = tuple(sorted({t for k in KINDS for t in k.tensors},
                            key=("weight", "bias", "running_mean", "running_var",
                                 "activation_weight").index))


class Unsupported(Exception):
    """A module of a mapped type whose configuration MPS cannot serve."""


def kind_of(module):
    """The manifest "type" of a mapped module, or None."""
    for kind in KINDS:
        if isinstance(module, kind.module):
            return kind.name
    return None


def _pair(value):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise Unsupported("expected a pair of integers, found %r" % (value,))
        return [int(value[0]), int(value[1])]
    return [int(value), int(value)]


def _conv_padding(module):
    """Explicit [h, w] padding, resolving PyTorch's string forms."""
    if not isinstance(module.padding, str):
        return _pair(module.padding)
    if module.padding == "valid":
        return [0, 0]
    if module.padding == "same":
        pads = []
        for axis, (k, d) in enumerate(zip(module.kernel_size, module.dilation)):
            total = d * (k - 1)
            # PyTorch puts the odd element on the bottom/right
            # (F.pad with _reversed_padding_repeated_twice); the manifest
            # has one symmetric value per axis.
            if total % 2:
                raise Unsupported(
                    "padding='same' with kernel_size %s and dilation %s pads %s unevenly "
                    "(%d before, %d after); the manifest takes symmetric padding only"
                    % (tuple(module.kernel_size), tuple(module.dilation),
                       "height" if axis == 0 else "width", total // 2, total - total // 2))
            pads.append(total // 2)
        return pads
    raise Unsupported("unknown padding %r" % (module.padding,))


def _weight_and_bias(module):
    tensors = [("weight", module.weight)]
    if module.bias is not None:
        tensors.append(("bias", module.bias))
    return tensors


def _conv(module, transposed):
    if module.padding_mode != "zeros":
        raise Unsupported(
            "padding_mode=%r; MPS convolutions pad with zeros only (put an explicit "
            "nn.ReflectionPad2d/ReplicationPad2d in front and use padding_mode='zeros')"
            % (module.padding_mode,))
    fields = OrderedDict()
    fields["in_channels"] = int(module.in_channels)
    fields["out_channels"] = int(module.out_channels)
    fields["kernel_size"] = _pair(module.kernel_size)
    fields["stride"] = _pair(module.stride)
    fields["padding"] = _conv_padding(module)
    if transposed:
        fields["output_padding"] = _pair(module.output_padding)
    fields["dilation"] = _pair(module.dilation)
    fields["groups"] = int(module.groups)
    return fields, _weight_and_bias(module)


def _linear(module):
    fields = OrderedDict()
    fields["in_features"] = int(module.in_features)
    fields["out_features"] = int(module.out_features)
    return fields, _weight_and_bias(module)


def _affine(module):
    return [("weight", module.weight), ("bias", module.bias)] if module.affine else []


def _norm(module):
    """The fields and affine tensors batch and instance norm share."""
    fields = OrderedDict()
    fields["num_features"] = int(module.num_features)
    fields["eps"] = float(module.eps)
    return fields, _affine(module)


def _group_norm(module):
    fields = OrderedDict()
    fields["num_groups"] = int(module.num_groups)
    fields["num_channels"] = int(module.num_channels)
    fields["eps"] = float(module.eps)
    fields["affine"] = bool(module.affine)
    return fields, _affine(module)


def _prelu(module, channels):
    """A standalone PReLU on a map of `channels` feature channels."""
    n = int(module.num_parameters)
    if n not in (1, channels):
        raise Unsupported("num_parameters=%d on an input of %d channels; expected 1 or %d"
                          % (n, channels, channels))
    fields = OrderedDict()
    fields["num_parameters"] = n
    fields["num_channels"] = int(channels)
    return fields, [("weight", module.weight)]


def _batch_norm(module):
    if not module.track_running_stats or module.running_mean is None or module.running_var is None:
        raise Unsupported(
            "track_running_stats=False: PyTorch normalizes with the batch's statistics even "
            "in eval mode, while MPS batch normalization applies stored mean and variance")
    fields, tensors = _norm(module)
    tensors += [("running_mean", module.running_mean), ("running_var", module.running_var)]
    return fields, tensors


def _instance_norm(module):
    if module.track_running_stats:
        raise Unsupported(
            "track_running_stats=True: in eval mode PyTorch normalizes with the stored running "
            "statistics, while MPS instance normalization uses each instance's own statistics")
    return _norm(module)


def map_module(module, input_shape=None):
    """(kind, fields, tensors) for a mapped module, called on an input of
    `input_shape` ([N, C, ...]; PReLU needs its C); raises Unsupported."""
    kind = kind_of(module)
    if kind == "conv2d":
        fields, tensors = _conv(module, transposed=False)
    elif kind == "conv_transpose2d":
        fields, tensors = _conv(module, transposed=True)
    elif kind == "linear":
        fields, tensors = _linear(module)
    elif kind == "batch_norm2d":
        fields, tensors = _batch_norm(module)
    elif kind == "instance_norm2d":
        fields, tensors = _instance_norm(module)
    elif kind == "group_norm":
        fields, tensors = _group_norm(module)
    elif kind == "prelu":
        if input_shape is None or len(input_shape) < 2:
            raise Unsupported("called on an input without a channel axis %s"
                              % (list(input_shape or []),))
        fields, tensors = _prelu(module, int(input_shape[1]))
    else:
        raise Unsupported("no MPS mapping for %s" % type(module).__name__)
    for role, t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            raise Unsupported("its %s is missing" % role)
        if isinstance(t, nn.parameter.UninitializedParameter):
            raise Unsupported("its %s is uninitialized (a lazy module that never ran)" % role)
        if not (t.is_floating_point()):
            raise Unsupported("its %s has dtype %s; the exporter writes float32 from floating "
                              "point tensors only" % (role, t.dtype))
    return kind, fields, tensors


def owned_state(module):
    """Names of the parameters and persistent buffers a module owns directly."""
    names = [n for n, p in module._parameters.items() if p is not None]
    non_persistent = getattr(module, "_non_persistent_buffers_set", set())
    names += [n for n, b in module._buffers.items() if b is not None and n not in non_persistent]
    return names
