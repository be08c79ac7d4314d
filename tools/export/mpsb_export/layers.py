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

# Order matters: ConvTranspose2d is not a Conv2d subclass, but keep the most
# specific classes first so a future subclass relation cannot misroute.
MAPPED_TYPES = (nn.ConvTranspose2d, nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.InstanceNorm2d)

KIND_OF = (
    (nn.ConvTranspose2d, "conv_transpose2d"),
    (nn.Conv2d, "conv2d"),
    (nn.Linear, "linear"),
    (nn.BatchNorm2d, "batch_norm2d"),
    (nn.InstanceNorm2d, "instance_norm2d"),
)

# Tensor roles, in the order they are listed in a layer. The names are the
# state_dict suffixes and the roles mpsb-dump --extract accepts.
TENSOR_ROLES = ("weight", "bias", "running_mean", "running_var")


class Unsupported(Exception):
    """A module of a mapped type whose configuration MPS cannot serve."""


def kind_of(module):
    """The manifest "type" of a mapped module, or None."""
    for cls, kind in KIND_OF:
        if isinstance(module, cls):
            return kind
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


def _norm(module):
    """The fields and affine tensors batch and instance norm share."""
    fields = OrderedDict()
    fields["num_features"] = int(module.num_features)
    fields["eps"] = float(module.eps)
    tensors = [("weight", module.weight), ("bias", module.bias)] if module.affine else []
    return fields, tensors


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


def map_module(module):
    """(kind, fields, tensors) for a mapped module; raises Unsupported."""
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
