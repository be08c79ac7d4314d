"""What the module hooks cannot see: how the layers connect.

torch.fx traces the model into a graph; ShapeProp fills every node's output
shape from the example input. From that graph this module finds

- Linear layers fed, through shape-only ops, by a 4-D [N, C, H, W] map:
  their weight columns are in C-major order and must be permuted to the HWC
  order of MPS feature maps (docs/FORMAT.md, "Layout transforms");
- activations that can be fused into the conv/linear before them (MPS
  applies a neuron as part of the convolution);
- BatchNorm2d layers whose input is exactly a conv's output and nothing else
  reads that output: the pairs mpsbc --fold-batchnorm may fold, and the
  activation after such a batch norm, which the folded conv fuses.

Two routes give the graph: torch.fx (analyze), and, for models torch.fx
cannot trace (shufflenet's `n, c, h, w = x.size()`), torch.jit.trace on the
example input (analyze_jit). Both fill the same GraphFacts.

Everything here is conservative: when in doubt it reports nothing, and the
manifest then describes the layers unfused, which is always correct. A
Linear's input is the exception: "nothing" there would mean "a vector",
which is wrong for a flattened map, so a Linear is either in input_shapes
(a flattened map), in vectors (proven a vector), or in neither, and the
exporter then decides by other means or stops.
"""

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .layers import FUSED_PRELU_FIELD, MAPPED_TYPES, SOFTPLUS_MIN_THRESHOLD

_ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ELU,
                       nn.Hardsigmoid, nn.Softplus, nn.GELU, nn.PReLU)
# Activations MPS has no neuron for: reported by name, never fused.
NOT_MPS_MODULES = (nn.Hardswish, nn.SiLU, nn.Mish)
_NOT_MPS_FUNCTIONS = {F.hardswish: "hardswish", F.silu: "silu", F.mish: "mish"}
_NOT_MPS_METHODS = {}

# Ops that pass values through unchanged in eval mode.
_PASSTHROUGH_MODULES = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_PASSTHROUGH_FUNCTIONS = {F.dropout, F.dropout2d, F.alpha_dropout, torch.dropout}
_PASSTHROUGH_METHODS = {"contiguous"}
# The functional forms of the fusable activations beyond ReLU's family
# (torch.* where torch has one).
_ELU_FUNCTIONS = {F.elu, F.elu_} | ({torch.elu} if hasattr(torch, "elu") else set())
_SOFTPLUS_FUNCTIONS = {F.softplus}
_GELU_FUNCTIONS = {F.gelu}
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
        # name -> Fused, the activation fused into the layer
        self.activations = {}
        # name -> [NotFused]: the activations after the layer that are not
        # fused (no MPS neuron, or a form MPS does not compute)
        self.unfused = {}
        # PReLU module names whose every call is fused into the layer before
        # it: no standalone prelu layer for them
        self.fused_prelus = set()
        # linear name -> [C, H, W]
        self.input_shapes = {}
        # linear names whose every input is shown to be a plain vector
        self.vectors = set()
        # batch_norm2d name -> conv name
        self.follows = {}


class _Tracer(torch.fx.Tracer):
    """Keeps mapped layers and activations as single call_module nodes, even
    when they are user subclasses living outside torch.nn."""

    def is_leaf_module(self, m, module_qualified_name):
        if isinstance(m, MAPPED_TYPES + _ACTIVATION_MODULES + NOT_MPS_MODULES +
                      _PASSTHROUGH_MODULES):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _arg(node, index, name, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


class Fused:
    """An activation the layer before it fuses: the manifest "activation",
    its parameters (manifest field -> value, kinds.h's names) and, for
    prelu, the nn.PReLU module whose weight becomes "activation_weight"."""

    def __init__(self, kind, params=None, prelu=None):
        self.kind = kind
        self.params = params or {}
        self.prelu = prelu

    def __eq__(self, other):
        return isinstance(other, Fused) and (self.kind, self.params, self.prelu) == \
            (other.kind, other.params, other.prelu)

    def __hash__(self):
        return hash((self.kind, tuple(sorted(self.params.items())), id(self.prelu)))

    def __repr__(self):
        return "Fused(%r, %r)" % (self.kind, self.params)


class NotFused:
    """An activation after the layer that MPS cannot fuse, and why; with
    the qualified name and class of its module when it is one."""

    def __init__(self, reason, module=None, type_name=None):
        self.reason = reason
        self.module = module
        self.type_name = type_name

    def _key(self):
        return (self.reason, self.module, self.type_name)

    def __eq__(self, other):
        return isinstance(other, NotFused) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _softplus(beta, threshold, what, module=None):
    beta, threshold = _number(beta), _number(threshold)
    if beta is None or threshold is None:
        return None
    if threshold < SOFTPLUS_MIN_THRESHOLD:
        return NotFused("%s has threshold=%g: MPS's SoftPlus has no threshold, and below %g "
                        "PyTorch's linear branch differs from it by more than float32 resolution"
                        % (what, threshold, SOFTPLUS_MIN_THRESHOLD), module, "Softplus")
    return Fused("softplus", {"beta": beta, "threshold": threshold})


def _gelu(approximate, what, module=None):
    if approximate == "none":
        return Fused("gelu")
    if isinstance(approximate, str):
        return NotFused("%s has approximate=%r: MPS's GeLU computes the erf form only "
                        "(approximate='none')" % (what, approximate), module, "GELU")
    return None


def not_mps_reason(name):
    """Why an activation MPS has no neuron for is not exported."""
    return ("MPS has no neuron for %s: it is not fused into the layer before it and must run "
            "outside MPS's convolution" % name)


def _not_mps(what, name, module=None):
    return NotFused("%s: %s" % (what, not_mps_reason(name)), module, name)


def _activation(node, modules, out_channels):
    """The activation `node` computes on its first argument: Fused when the
    layer before it (of `out_channels` outputs) can fuse it, NotFused when
    it is an activation MPS cannot fuse, None for anything else."""
    if node.op == "call_module":
        m = modules.get(node.target)
        what = "%s (%s)" % (node.target, type(m).__name__)
        if isinstance(m, nn.ReLU6):
            return Fused("relu6")
        if isinstance(m, nn.Hardtanh):
            if float(m.min_val) == 0.0 and float(m.max_val) == 6.0:
                return Fused("relu6")
            return None
        if isinstance(m, nn.ReLU):
            return Fused("relu")
        if isinstance(m, nn.LeakyReLU):
            return Fused("leaky_relu", {"negative_slope": float(m.negative_slope)})
        if isinstance(m, nn.Sigmoid):
            return Fused("sigmoid")
        if isinstance(m, nn.Tanh):
            return Fused("tanh")
        if isinstance(m, nn.ELU):
            return Fused("elu", {"alpha": float(m.alpha)})
        if isinstance(m, nn.Hardsigmoid):
            return Fused("hardsigmoid")
        if isinstance(m, nn.Softplus):
            return _softplus(m.beta, m.threshold, what, node.target)
        if isinstance(m, nn.GELU):
            return _gelu(getattr(m, "approximate", "none"), what, node.target)
        if isinstance(m, nn.PReLU):
            n = int(m.num_parameters)
            if n not in (1, out_channels):
                return NotFused("%s has num_parameters=%d after a layer of %d outputs; MPS "
                                "fuses 1 or one slope per output channel" % (what, n,
                                                                              out_channels),
                                node.target, "PReLU")
            return Fused("prelu", {FUSED_PRELU_FIELD: n}, prelu=m)
        if isinstance(m, NOT_MPS_MODULES):
            return _not_mps(what, type(m).__name__, node.target)
        return None
    if node.op == "call_function":
        f = node.target
        what = "%s (F.%s)" % (node.name, getattr(f, "__name__", f))
        if f in (F.relu, F.relu_, torch.relu, torch.relu_):
            return Fused("relu")
        if f is F.relu6:
            return Fused("relu6")
        if f in (F.hardtanh, F.hardtanh_):
            lo = _arg(node, 1, "min_val", -1.0)
            hi = _arg(node, 2, "max_val", 1.0)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and \
                    float(lo) == 0.0 and float(hi) == 6.0:
                return Fused("relu6")
            return None
        if f in (F.leaky_relu, F.leaky_relu_):
            slope = _number(_arg(node, 1, "negative_slope", 0.01))
            return None if slope is None else Fused("leaky_relu", {"negative_slope": slope})
        if f in (torch.sigmoid, F.sigmoid):
            return Fused("sigmoid")
        if f in (torch.tanh, F.tanh):
            return Fused("tanh")
        if f in _ELU_FUNCTIONS:
            alpha = _number(_arg(node, 1, "alpha", 1.0))
            return None if alpha is None else Fused("elu", {"alpha": alpha})
        if f is F.hardsigmoid:
            return Fused("hardsigmoid")
        if f in _SOFTPLUS_FUNCTIONS:
            return _softplus(_arg(node, 1, "beta", 1.0), _arg(node, 2, "threshold", 20.0), what)
        if f in _GELU_FUNCTIONS:
            return _gelu(_arg(node, 1, "approximate", "none"), what)
        if f in _NOT_MPS_FUNCTIONS:
            return _not_mps(what, _NOT_MPS_FUNCTIONS[f])
        return None
    if node.op == "call_method":
        what = "%s (Tensor.%s)" % (node.name, node.target)
        if node.target in ("relu", "relu_"):
            return Fused("relu")
        if node.target in ("sigmoid", "sigmoid_"):
            return Fused("sigmoid")
        if node.target in ("tanh", "tanh_"):
            return Fused("tanh")
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


MAP, VECTOR = "map", "vector"


def _classify_linear_input(linear_in, source, reshaped):
    """(MAP, (C, H, W)) when a Linear's [N, F] input is a row-major flatten of
    the 4-D `source`, (VECTOR, None) when it is a 2-D tensor used as it is (or
    reshaped from one of the same shape), None when the shapes do not say."""
    if source is None or linear_in is None or len(linear_in) != 2:
        return None
    if len(source) == 2 and source == linear_in:
        return VECTOR, None
    if reshaped and len(source) == 4:
        n, c, h, w = source
        if linear_in == [n, c * h * w]:
            return MAP, (c, h, w)
    return None


def _linear_input(linear_node, modules):
    """_classify_linear_input for a torch.fx Linear call."""
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
    return _classify_linear_input(linear_in, _shape(node), reshaped)


def _linear_facts(facts, name, found):
    """Records one Linear's input from the classification of each call."""
    if len(found) != 1:
        return
    got = found.pop()
    if got is None:
        return
    if got[0] == MAP:
        facts.input_shapes[name] = list(got[1])
    else:
        facts.vectors.add(name)


def _fusing_outputs(module):
    """The output channels of a layer an activation after it is fused into
    (conv, linear, and a batch norm, whose activation the folded conv
    fuses), else None."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return module.out_channels
    if isinstance(module, nn.BatchNorm2d):
        return module.num_features
    return None


def _fusion_facts(facts, name, found):
    """Records the activation every call of `name` ends in, from `found`:
    [(Fused, NotFused or None, the activation's call)]. Returns whether a
    prelu was fused (its calls then are no layers of their own)."""
    acts = {act for act, _ in found}
    unfused = [a for a in acts if isinstance(a, NotFused)]
    if unfused:
        facts.unfused[name] = sorted(unfused, key=lambda a: a.reason)
        return False
    if len(acts) != 1 or None in acts:
        return False
    act = acts.pop()
    facts.activations[name] = act
    return act.kind == "prelu"


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
    fused_nodes = set()  # the PReLU call nodes fused into a layer

    for name in layer_names:
        module = modules.get(name)
        nodes = calls.get(name, [])
        if module is None or not nodes:
            continue

        outputs = _fusing_outputs(module)
        if outputs is not None:
            # Every call must end in the same activation, or none is fused.
            found = []
            for node in nodes:
                users = list(node.users)
                act = None
                if len(users) == 1 and users[0].args and users[0].args[0] is node:
                    act = _activation(users[0], modules, outputs)
                found.append((act, users[0] if act is not None else None))
            if _fusion_facts(facts, name, found):
                fused_nodes.update(user for _, user in found)

        if isinstance(module, nn.Linear):
            _linear_facts(facts, name, {_linear_input(node, modules) for node in nodes})

        if isinstance(module, nn.BatchNorm2d) and len(nodes) == 1:
            src = nodes[0].args[0] if nodes[0].args else None
            if isinstance(src, torch.fx.Node) and src.op == "call_module" and \
                    isinstance(modules.get(src.target), (nn.Conv2d, nn.ConvTranspose2d)) and \
                    len(calls.get(src.target, [])) == 1 and len(src.users) == 1 and \
                    src.target in layer_names:
                facts.follows[name] = src.target

    for name in layer_names:
        nodes = calls.get(name, [])
        if isinstance(modules.get(name), nn.PReLU) and nodes and all(n in fused_nodes
                                                                     for n in nodes):
            facts.fused_prelus.add(name)
    return facts


# ---------------------------------------------------------------------------
# The torch.jit.trace route

# The op each call of a mapped module records, by module type.
_JIT_LAYER_OPS = (
    ((nn.Conv2d, nn.ConvTranspose2d), {"aten::_convolution", "aten::conv2d",
                                       "aten::conv_transpose2d"}),
    (nn.Linear, {"aten::linear", "aten::addmm", "aten::matmul"}),
    (nn.BatchNorm2d, {"aten::batch_norm"}),
    (nn.InstanceNorm2d, {"aten::instance_norm"}),
    (nn.GroupNorm, {"aten::group_norm"}),
    (nn.PReLU, {"aten::prelu"}),
)
# Functional activations as the traced graph spells them: op -> (the
# function _activation knows, how many constant arguments it reads).
_JIT_FUNCTIONS = {
    "aten::relu": (F.relu, 0), "aten::relu_": (F.relu, 0), "aten::relu6": (F.relu6, 0),
    "aten::hardtanh": (F.hardtanh, 2), "aten::hardtanh_": (F.hardtanh, 2),
    "aten::leaky_relu": (F.leaky_relu, 1), "aten::leaky_relu_": (F.leaky_relu, 1),
    "aten::sigmoid": (torch.sigmoid, 0), "aten::sigmoid_": (torch.sigmoid, 0),
    "aten::tanh": (torch.tanh, 0), "aten::tanh_": (torch.tanh, 0),
    "aten::hardsigmoid": (F.hardsigmoid, 0), "aten::hardsigmoid_": (F.hardsigmoid, 0),
    "aten::softplus": (F.softplus, 2), "aten::gelu": (F.gelu, 1),
    "aten::silu": (F.silu, 0), "aten::silu_": (F.silu, 0),
    "aten::hardswish": (F.hardswish, 0), "aten::hardswish_": (F.hardswish, 0),
    "aten::mish": (F.mish, 0), "aten::mish_": (F.mish, 0),
}
_JIT_ELU = {"aten::elu", "aten::elu_"}
_JIT_PASSTHROUGH = {"aten::dropout", "aten::dropout_", "aten::feature_dropout",
                    "aten::alpha_dropout", "aten::contiguous", "aten::detach"}
_JIT_RESHAPE = {"aten::view", "aten::reshape", "aten::flatten"}


class _Call:
    """A traced op in the shape of the torch.fx node _activation reads."""

    def __init__(self, op, target, args, name):
        self.op = op
        self.target = target
        self.args = args
        self.kwargs = {}
        self.name = name


class _TensorsOut(nn.Module):
    """The model with its output as a flat tuple of its tensors:
    torch.jit.trace takes only tensors and lists, tuples and dicts of them
    as outputs, and detection models return lists of dicts with other values."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return tuple(_tensors(self.model(*inputs)))


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


_SCOPE = "__module.model"   # the model inside _TensorsOut


def _scope_module(node):
    """The qualified name of the model's module whose forward recorded
    `node` ("" for the model's own code), from the tracer's scope
    "__module.model/__module.model.a/__module.model.a.b"."""
    last = node.scopeName().split("/")[-1]
    if last.startswith(_SCOPE + "."):
        return last[len(_SCOPE) + 1:]
    return ""


def _constant(value):
    if value.node().kind() != "prim::Constant":
        return None
    try:
        return value.toIValue()
    except RuntimeError:
        return None


def _node_key(node):
    """A traced op's identity: its first output's name, unique in the graph
    (the Python objects for one op need not be the same object)."""
    return node.outputsAt(0).debugName()


def _jit_shape(value):
    t = value.type()
    if t.kind() != "TensorType":
        return None
    sizes = t.sizes()
    return None if sizes is None else [int(d) for d in sizes]


def _jit_activation(node, modules, outputs):
    """_activation for a traced op: by its module when an activation module
    recorded it, else by its functional form."""
    owner = _scope_module(node)
    m = modules.get(owner)
    if owner and isinstance(m, _ACTIVATION_MODULES + NOT_MPS_MODULES):
        return _activation(_Call("call_module", owner, [None], owner), modules, outputs)
    kind = node.kind()
    inputs = list(node.inputs())
    if kind in _JIT_ELU:
        # aten::elu(x, alpha, scale, input_scale): MPS's ELU has no scales.
        consts = [_constant(v) for v in inputs[1:4]]
        if len(consts) != 3 or any(_number(c) is None for c in consts) or \
                float(consts[1]) != 1.0 or float(consts[2]) != 1.0:
            return None
        return _activation(_Call("call_function", F.elu, [None, consts[0]], kind), modules,
                           outputs)
    if kind not in _JIT_FUNCTIONS:
        return None
    function, count = _JIT_FUNCTIONS[kind]
    consts = [_constant(v) for v in inputs[1:1 + count]]
    if len(consts) != count or any(c is None for c in consts):
        return None
    return _activation(_Call("call_function", function, [None] + consts, kind), modules, outputs)


def _jit_linear_input(node):
    """_classify_linear_input for a traced Linear op."""
    inputs = list(node.inputs())
    if node.kind() == "aten::addmm":   # addmm(bias, input, weight.t())
        inputs = inputs[1:]
    if not inputs:
        return None
    value = inputs[0]
    linear_in = _jit_shape(value)
    reshaped = False
    while True:
        producer = value.node()
        kind = producer.kind()
        if kind in _JIT_PASSTHROUGH:
            value = producer.inputsAt(0)
        elif kind in _JIT_RESHAPE:
            reshaped = True
            value = producer.inputsAt(0)
        else:
            break
    return _classify_linear_input(linear_in, _jit_shape(value), reshaped)


def analyze_jit(model, inputs, layer_names):
    """GraphFacts as analyze() gives them, from torch.jit.trace of `model` on
    `inputs`: the graph of what ran on the example input. Raises whatever
    tracing raised."""
    import warnings
    with warnings.catch_warnings():
        # TracerWarnings (a tensor turned into a Python value, ...) and
        # deprecation notes: what they warn about is the trace being valid
        # for other inputs; only this input's graph is read here.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(_TensorsOut(model), inputs, check_trace=False, strict=False)
        graph = traced.inlined_graph
    modules = dict(model.named_modules())
    calls = {}
    for node in graph.nodes():
        owner = _scope_module(node)
        m = modules.get(owner) if owner in layer_names else None
        if m is None:
            continue
        for types, ops in _JIT_LAYER_OPS:
            if isinstance(m, types) and node.kind() in ops:
                calls.setdefault(owner, []).append(node)
                break
    facts = GraphFacts()
    fused_nodes = set()
    for name in layer_names:
        module, nodes = modules.get(name), calls.get(name, [])
        if module is None or not nodes:
            continue
        outputs = _fusing_outputs(module)
        if outputs is not None:
            found = []
            for node in nodes:
                uses = list(node.outputsAt(0).uses())
                act = None
                if len(uses) == 1 and uses[0].offset == 0:
                    act = _jit_activation(uses[0].user, modules, outputs)
                found.append((act, _node_key(uses[0].user) if act is not None else None))
            if _fusion_facts(facts, name, found):
                fused_nodes.update(user for _, user in found)
        if isinstance(module, nn.Linear):
            _linear_facts(facts, name, {_jit_linear_input(node) for node in nodes})
        if isinstance(module, nn.BatchNorm2d) and len(nodes) == 1:
            src = nodes[0].inputsAt(0)
            producer = src.node()
            conv = _scope_module(producer)
            if isinstance(modules.get(conv), (nn.Conv2d, nn.ConvTranspose2d)) and \
                    conv in layer_names and \
                    [_node_key(n) for n in calls.get(conv, [])] == [_node_key(producer)] and \
                    len(list(src.uses())) == 1:
                facts.follows[name] = conv
    for name in layer_names:
        nodes = calls.get(name, [])
        if isinstance(modules.get(name), nn.PReLU) and nodes and all(_node_key(n) in fused_nodes
                                                                     for n in nodes):
            facts.fused_prelus.add(name)
    return facts


__all__ = ["Fused", "GraphFacts", "MAP", "NOT_MPS_MODULES", "VECTOR", "analyze", "analyze_jit"]
