"""What the module hooks cannot see: how the layers connect.

torch.fx traces the model into a graph; ShapeProp fills every node's output
shape from the example input. From that graph this module finds

- Linear layers fed, through shape-only ops, by a 4-D [N, C, H, W] map:
  their weight columns are in C-major order and must be permuted to the HWC
  order of MPS feature maps (docs/FORMAT.md, "Layout transforms");
- activations that can be fused into the conv/linear before them (MPS
  applies a neuron as part of the convolution);
- BatchNorm2d layers whose input is exactly a conv's output and nothing else
  reads that output: the pairs mpsbc --fold-batchnorm may fold.

Everything here is conservative: when in doubt it reports nothing, and the
manifest then describes the layers unfused, which is always correct.
"""

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .layers import MAPPED_TYPES

_ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)

# Ops that pass values through unchanged in eval mode.
_PASSTHROUGH_MODULES = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_PASSTHROUGH_FUNCTIONS = {F.dropout, F.dropout2d, F.alpha_dropout, torch.dropout}
_PASSTHROUGH_METHODS = {"contiguous"}
_PASSTHROUGH = (_PASSTHROUGH_MODULES, _PASSTHROUGH_FUNCTIONS, _PASSTHROUGH_METHODS)
# Row-major reinterpretations: any chain of them turns [N, C, H, W] into the
# same [N, C*H*W] as torch.flatten(x, 1), whatever the intermediate shapes.
_RESHAPE_MODULES = (nn.Flatten,)
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_RESHAPE = (_RESHAPE_MODULES, _RESHAPE_FUNCTIONS, _RESHAPE_METHODS)


class GraphFacts:
    """What the traced graph tells about the mapped layers, by layer name."""

    def __init__(self):
        # name -> ("relu" | "relu6" | "leaky_relu" | "sigmoid" | "tanh", slope or None)
        self.activations = {}
        # linear name -> [C, H, W]
        self.input_shapes = {}
        # batch_norm2d name -> conv name
        self.follows = {}


class _Tracer(torch.fx.Tracer):
    """Keeps mapped layers and activations as single call_module nodes, even
    when they are user subclasses living outside torch.nn."""

    def is_leaf_module(self, m, module_qualified_name):
        if isinstance(m, MAPPED_TYPES + _ACTIVATION_MODULES + _PASSTHROUGH_MODULES):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _arg(node, index, name, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _activation(node, modules):
    """The fusable activation `node` computes on its first argument, or None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, nn.ReLU6):
            return ("relu6", None)
        if isinstance(m, nn.Hardtanh):
            if float(m.min_val) == 0.0 and float(m.max_val) == 6.0:
                return ("relu6", None)
            return None
        if isinstance(m, nn.ReLU):
            return ("relu", None)
        if isinstance(m, nn.LeakyReLU):
            return ("leaky_relu", float(m.negative_slope))
        if isinstance(m, nn.Sigmoid):
            return ("sigmoid", None)
        if isinstance(m, nn.Tanh):
            return ("tanh", None)
        return None
    if node.op == "call_function":
        f = node.target
        if f in (F.relu, F.relu_, torch.relu, torch.relu_):
            return ("relu", None)
        if f is F.relu6:
            return ("relu6", None)
        if f in (F.hardtanh, F.hardtanh_):
            lo = _arg(node, 1, "min_val", -1.0)
            hi = _arg(node, 2, "max_val", 1.0)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and \
                    float(lo) == 0.0 and float(hi) == 6.0:
                return ("relu6", None)
            return None
        if f in (F.leaky_relu, F.leaky_relu_):
            slope = _arg(node, 1, "negative_slope", 0.01)
            if not isinstance(slope, (int, float)):
                return None
            return ("leaky_relu", float(slope))
        if f in (torch.sigmoid, F.sigmoid):
            return ("sigmoid", None)
        if f in (torch.tanh, F.tanh):
            return ("tanh", None)
        return None
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return ("relu", None)
        if node.target in ("sigmoid", "sigmoid_"):
            return ("sigmoid", None)
        if node.target in ("tanh", "tanh_"):
            return ("tanh", None)
    return None


def _node_is(node, modules, kinds):
    """Whether `node` calls one of `kinds`: (module types, functions, method names)."""
    module_types, functions, methods = kinds
    if node.op == "call_module":
        return isinstance(modules.get(node.target), module_types)
    if node.op == "call_function":
        return node.target in functions
    if node.op == "call_method":
        return node.target in methods
    return False


def _shape(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    shape = getattr(meta, "shape", None)
    return None if shape is None else [int(d) for d in shape]


def _flattened_map_shape(linear_node, modules):
    """[C, H, W] when the Linear's input is a flattened 4-D map, else None."""
    if not linear_node.args or not isinstance(linear_node.args[0], torch.fx.Node):
        return None
    linear_in = _shape(linear_node.args[0])
    node = linear_node.args[0]
    reshaped = False
    while isinstance(node, torch.fx.Node) and node.args and isinstance(node.args[0], torch.fx.Node):
        if _node_is(node, modules, _PASSTHROUGH):
            node = node.args[0]
        elif _node_is(node, modules, _RESHAPE):
            reshaped = True
            node = node.args[0]
        else:
            break
    source = _shape(node)
    if not reshaped or source is None or linear_in is None:
        return None
    if len(source) != 4 or len(linear_in) != 2:
        return None
    n, c, h, w = source
    if linear_in != [n, c * h * w]:
        return None
    return [c, h, w]


def _calls_by_target(graph):
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    return calls


def analyze(model, inputs, layer_names):
    """Traces `model` and returns GraphFacts for the layers in `layer_names`
    (qualified module names). Raises whatever tracing or shape propagation
    raised; the caller falls back to hooks only."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    gm = torch.fx.GraphModule(tracer.root, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(*inputs)
    modules = dict(gm.named_modules())
    calls = _calls_by_target(graph)
    facts = GraphFacts()

    for name in layer_names:
        module = modules.get(name)
        nodes = calls.get(name, [])
        if module is None or not nodes:
            continue

        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # Every call must end in the same activation, or none is fused.
            found = set()
            for node in nodes:
                users = list(node.users)
                act = None
                if len(users) == 1 and users[0].args and users[0].args[0] is node:
                    act = _activation(users[0], modules)
                found.add(act)
            if len(found) == 1 and None not in found:
                facts.activations[name] = found.pop()

        if isinstance(module, nn.Linear):
            shapes = {tuple(s) if s else None for s in
                      (_flattened_map_shape(node, modules) for node in nodes)}
            if len(shapes) == 1:
                s = shapes.pop()
                if s is not None:
                    facts.input_shapes[name] = list(s)

        if isinstance(module, nn.BatchNorm2d) and len(nodes) == 1:
            src = nodes[0].args[0] if nodes[0].args else None
            if isinstance(src, torch.fx.Node) and src.op == "call_module" and \
                    isinstance(modules.get(src.target), (nn.Conv2d, nn.ConvTranspose2d)) and \
                    len(calls.get(src.target, [])) == 1 and len(src.users) == 1 and \
                    src.target in layer_names:
                facts.follows[name] = src.target
    return facts


__all__ = ["GraphFacts", "analyze"]
