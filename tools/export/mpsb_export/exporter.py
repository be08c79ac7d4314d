"""Plans and writes an mpsb manifest from a torch.nn.Module.

plan() runs the model once and decides everything; write() only writes what
the plan says. Nothing is written when planning fails (unsupported modules,
a module called with keyword arguments, ...).
"""

import json
import os
import re
import warnings
from collections import OrderedDict

import torch
from torch import nn

from . import graph
from .layers import KINDS, MAPPED_TYPES, TENSOR_ROLES, Unsupported, map_module, owned_state

MANIFEST_FORMAT = "mpsb.manifest/1"
MANIFEST_FILE = "manifest.json"
PROBE_DIR = "probes"
EXPORTER = "mpsb_export"


# How a message names an option: the keyword of export() or the flag of the
# command line (python -m mpsb_export), so each says what its user can type.
API, CLI = "api", "cli"
_OPTION_NAMES = {
    "allow_unsupported": {API: "allow_unsupported=True", CLI: "--allow-unsupported"},
    "input_shape_of": {API: "input_shape_of={%r: (C, H, W)}", CLI: "--input-shape-of %s=C,H,W"},
    "input_shape_of_vector": {API: "input_shape_of={%r: \"vector\"}",
                              CLI: "--input-shape-of %s=vector"},
    "input_shape_of_name": {API: "input_shape_of", CLI: "--input-shape-of"},
}


def option(key, spelling, layer=None):
    """An option as `spelling` (API or CLI) writes it, for `layer` when it takes one."""
    text = _OPTION_NAMES[key][spelling]
    return text % layer if layer is not None else text


class ExportError(Exception):
    """The model cannot be exported as asked. The message names the module."""

    def describe(self, spelling=API):
        """The message, naming the options as `spelling` (API or CLI) spells them."""
        return str(self)


class _OptionError(ExportError):
    """An ExportError whose message names an option: `text` with %s where
    the option `key` goes."""

    def __init__(self, text, key):
        self.text = text
        self.key = key
        super().__init__(self.describe(API))

    def describe(self, spelling=API):
        return self.text % option(self.key, spelling)


# What to do about a module type mpsb does not map. "mpsb has no mapping
# yet": MPS has the kernel (the class is named), mpsb does not write it.
# "MPS has no such layer": none of MPS's CNN kernels computes it.
_HAS_MPS_KERNEL = {
    "LSTM": "MPSRNNMatrixInferenceLayer with an MPSLSTMDescriptor",
    "GRU": "MPSRNNMatrixInferenceLayer with an MPSGRUDescriptor",
    "RNN": "MPSRNNMatrixInferenceLayer with an MPSRNNSingleGateDescriptor",
    "Conv1d": "MPSCNNConvolution, as a 1 x K kernel on a one-row image",
    "BatchNorm1d": "MPSCNNBatchNormalization, on a 1 x 1 or one-row image",
    "FrozenBatchNorm2d": "MPSCNNBatchNormalization",
    "SyncBatchNorm": "MPSCNNBatchNormalization",
    "InstanceNorm1d": "MPSCNNInstanceNormalization, on a one-row image",
    "ConvTranspose1d": "MPSCNNConvolutionTranspose, as a 1 x K kernel on a one-row image",
}
_NO_MPS_LAYER = {
    "Conv3d": "MPS's CNN kernels have no 3-D convolution",
    "ConvTranspose3d": "MPS's CNN kernels have no 3-D convolution",
    "BatchNorm3d": "MPS's CNN kernels work on 2-D images",
    "InstanceNorm3d": "MPS's CNN kernels work on 2-D images",
    "LayerNorm": "MPS's CNN kernels have no layer normalization",
    "Embedding": "MPS's CNN kernels have no table lookup",
    "EmbeddingBag": "MPS's CNN kernels have no table lookup",
    "MultiheadAttention": "MPS's CNN kernels have no attention",
    "Bilinear": "MPS's CNN kernels have no bilinear form",
}


def known_base(cls):
    """The name under which the tables above know `cls` or a class it derives
    from (torchvision's LayerNorm2d is an nn.LayerNorm), else its own."""
    for c in cls.__mro__:
        if c.__name__ in _HAS_MPS_KERNEL or c.__name__ in _NO_MPS_LAYER:
            return c.__name__
    return cls.__name__


def module_advice(type_name, mapped, base=None):
    """What a user can do about modules of `type_name` (known to the tables
    as `base`) that cannot be exported."""
    base = base or type_name
    if mapped:
        return ("mpsb maps %s, but not in the configuration below: change it as the reason "
                "says, or run the module outside the bundle" % type_name)
    if base in _HAS_MPS_KERNEL:
        return ("mpsb has no mapping yet: MPS has the kernel (%s), but mpsb does not write "
                "its weights; run it in the app outside the bundle" % _HAS_MPS_KERNEL[base])
    if base in _NO_MPS_LAYER:
        return ("MPS has no such layer (%s): run it outside MPS, or change the model"
                % _NO_MPS_LAYER[base])
    return ("mpsb has no mapping for %s, a module that uses its own parameters or buffers in "
            "its forward: build it from mapped modules (Conv2d, Linear, BatchNorm2d, ...), or "
            "run it outside the bundle" % type_name)


class UnsupportedModuleError(ExportError):
    """Modules that hold weights the manifest cannot describe.

    `modules` is a list of (qualified name, class name, reason), in
    named_modules() order. The message groups them by type, each type with
    what to do about it.
    """

    def __init__(self, modules, mapped_types=(), bases=None):
        self.modules = list(modules)
        self.mapped_types = set(mapped_types)
        self.bases = dict(bases or {})   # class name -> known_base()
        super().__init__(self.describe(API))

    def describe(self, spelling=API):
        by_type = {}
        for n, t, r in self.modules:
            by_type.setdefault(t, []).append((n, r))
        lines = ["%d module(s) of %d type(s) cannot be exported to an mpsb manifest:"
                 % (len(self.modules), len(by_type))]
        for t, members in by_type.items():
            lines.append("  %s, %d module(s): %s" % (t, len(members),
                                                     module_advice(t, t in self.mapped_types,
                                                                   self.bases.get(t))))
            lines += ["    %s (%s): %s" % (n or "<root>", t, r) for n, r in members]
        lines.append("Pass %s to export the rest: these modules are then listed under "
                     "\"skipped\" in the manifest, and the app must run them outside the "
                     "bundle." % option("allow_unsupported", spelling))
        return "\n".join(lines)


class LinearInputError(ExportError):
    """Linear layers whose input may be a flattened feature map, and the
    exporter could not find out. `layers` is [(layer name, in_features)]."""

    def __init__(self, layers, why):
        self.layers = list(layers)
        self.why = why
        super().__init__(self.describe(API))

    def describe(self, spelling=API):
        lines = ["%d Linear layer(s): cannot tell whether the input is a plain vector or a "
                 "flattened [C, H, W] feature map: %s. A flattened map needs input_shape (MPS "
                 "feature maps are in H, W, C order, so the weight columns are reordered); "
                 "say which:" % (len(self.layers), self.why)]
        for name, features in self.layers:
            lines.append("  %s (Linear, in_features %d): %s with C*H*W = %d, or %s"
                         % (name, features, option("input_shape_of", spelling, name), features,
                            option("input_shape_of_vector", spelling, name)))
        return "\n".join(lines)


class ExportWarning(UserWarning):
    """Something the user should look at; the export still went ahead."""


class Probe:
    """A layer's first-call input and output, cloned when they were seen."""

    def __init__(self, input, output, calls):
        self.input = input
        self.output = output
        self.calls = calls


class LayerPlan:
    """One manifest layer: the module, its fields, tensors and probe."""

    def __init__(self, name, module, kind, fields, tensors):
        self.name = name              # the manifest layer name
        self.qualified_name = name    # the name in model.named_modules()
        self.module = module
        self.kind = kind
        self.fields = fields          # OrderedDict of the module's arguments
        self.tensors = tensors        # [(role, tensor)]
        # The fused activation: (kind, its first parameter or None), e.g.
        # ("leaky_relu", 0.2); activation_params has every manifest field
        # it adds, in kinds.h's order
        self.activation = None
        self.activation_params = OrderedDict()
        self.input_shape = None       # linear: [C, H, W]
        self.follows = None           # batch_norm2d: conv layer name
        self.probe = None             # Probe
        self.file_stem = None         # file name prefix, set by plan()


class ExportPlan:
    """Everything export() writes, decided before anything is written."""

    def __init__(self):
        self.layers = []      # LayerPlan, in order of first forward call
        self.skipped = []     # (name, class name, reason)
        self.warnings = []    # str, also emitted as ExportWarning
        self.traced = False   # torch.fx analysis ran
        self.trace_error = None
        # Where the graph facts come from: "torch.fx", "torch.jit.trace"
        # (torch.fx failed) or None (both failed: forward hooks only)
        self.route = None
        self.jit_error = None


def _warn(plan, text):
    plan.warnings.append(text)
    warnings.warn(text, ExportWarning, stacklevel=3)


def _as_inputs(example_input):
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and all(
            isinstance(x, torch.Tensor) for x in example_input) and example_input:
        return tuple(example_input)
    raise ExportError("example_input must be a tensor or a non-empty tuple of tensors, found %s"
                      % type(example_input).__name__)


def _first_line(exc):
    """The exception's type and first sentence (torch.fx's run on)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if ". " in first:
        first = first[:first.index(". ")]
    return "%s: %s" % (type(exc).__name__, first)


def _display(name):
    return name if name else "<root>"


def _file_stems(names):
    """Safe, unique file name prefixes. Qualified names are already safe
    (identifiers, digits and dots); ModuleDict keys may not be."""
    stems, used = {}, set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "model"
        if stem.startswith("."):
            stem = "_" + stem
        base, i = stem, 2
        while stem.lower() in used:  # also unique on case-insensitive file systems
            stem = "%s_%d" % (base, i)
            i += 1
        used.add(stem.lower())
        stems[name] = stem
    return stems


def _batched(t, ndim):
    """Adds the batch axis to an unbatched input ([C, H, W] or [F])."""
    return t.unsqueeze(0) if t.dim() == ndim - 1 else t


VECTOR = graph.VECTOR  # input_shape_of's value for a Linear on a vector


def _input_shapes_of(given):
    """input_shape_of, checked: {layer name: [C, H, W] or VECTOR}."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ExportError("input_shape_of must map Linear layer names to (C, H, W) or "
                          "\"vector\", found %s" % type(given).__name__)
    checked = {}
    for name, shape in given.items():
        if shape == VECTOR:
            checked[name] = VECTOR
            continue
        dims = list(shape) if isinstance(shape, (tuple, list)) else None
        if dims is None or len(dims) != 3 or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ExportError("input_shape_of[%r]: expected three positive integers (C, H, W) "
                              "or \"vector\", found %r" % (name, shape))
        checked[name] = dims
    return checked


def plan(model, example_input, allow_unsupported=False, probes=True, input_shape_of=None):
    """Runs `model` once on `example_input` and decides the manifest.

    input_shape_of: {Linear layer name: (C, H, W) or "vector"}, what the
    Linear's input is, for when the exporter cannot find it out itself.
    Leaves the model's training flags as they were. Raises
    UnsupportedModuleError (unless allow_unsupported), LinearInputError or
    ExportError.
    """
    if not isinstance(model, nn.Module):
        raise ExportError("model must be a torch.nn.Module, found %s" % type(model).__name__)
    inputs = _as_inputs(example_input)
    overrides = _input_shapes_of(input_shape_of)
    result = ExportPlan()
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        _plan_into(result, model, inputs, allow_unsupported, overrides)
    finally:
        for m, flag in training.items():
            m.training = flag
    if not probes:
        for layer in result.layers:
            layer.probe = None
    return result


def _plan_into(result, model, inputs, allow_unsupported, overrides):
    named = list(model.named_modules())
    mapped = [(n, m) for n, m in named if isinstance(m, MAPPED_TYPES)]
    unsupported = []
    not_mps = []  # activations MPS has no neuron for: reported, never fused
    for n, m in named:
        if isinstance(m, MAPPED_TYPES):
            continue
        if isinstance(m, graph.NOT_MPS_MODULES):
            not_mps.append((n, type(m).__name__, graph.not_mps_reason(type(m).__name__)))
        state = owned_state(m)
        if state:
            unsupported.append((n, type(m).__name__,
                                "owns %s and has no MPS mapping" % ", ".join(state)))

    unknown = sorted(set(overrides) - {n for n, m in mapped if isinstance(m, nn.Linear)})
    if unknown:
        linears = [n for n, m in mapped if isinstance(m, nn.Linear)]
        raise _OptionError("%%s names %s, which %s no Linear layer of the model (its Linear "
                           "layers: %s)" % (", ".join(unknown),
                                            "is" if len(unknown) == 1 else "are",
                                            ", ".join(linears) or "none"), "input_shape_of_name")

    # 1. The graph: torch.fx, else torch.jit.trace on the example input.
    facts = graph.GraphFacts()
    layer_names = {n for n, _ in mapped}
    try:
        facts = graph.analyze(model, inputs, layer_names)
        result.traced = True
        result.route = "torch.fx"
    except Exception as exc:  # tracing fails in many ways; all mean "no graph"
        result.trace_error = _first_line(exc)
        try:
            facts = graph.analyze_jit(model, inputs, layer_names)
            result.route = "torch.jit.trace"
            _warn(result, "torch.fx could not trace the model (%s); the graph (fused "
                          "activations, batch norms that follow a conv, what feeds each "
                          "Linear) comes from torch.jit.trace on the example input instead"
                  % result.trace_error)
        except Exception as jit_exc:
            result.jit_error = _first_line(jit_exc)
            facts = graph.GraphFacts()
    # A Linear the graph says nothing about is matched against the outputs
    # the forward hooks see.
    need_outputs = any(isinstance(m, nn.Linear) and n not in facts.input_shapes and
                       n not in facts.vectors and n not in overrides for n, m in mapped)

    # 2. One run with hooks: the probes and the execution order.
    seen = OrderedDict()      # name -> Probe, in order of first call
    call_index = {}           # name -> event index of its first call (fallback)
    events = []               # fallback: (module name, its 4-D output), in call order
    pending = {}
    handles = []
    errors = []

    def pre_hook(name):
        def hook(module, args):
            if not args or not isinstance(args[0], torch.Tensor):
                errors.append("%s (%s) was called without a positional tensor input; its probe "
                              "cannot be captured" % (_display(name), type(module).__name__))
                return
            if name not in seen and name not in pending:
                pending[name] = args[0].detach().clone()
                call_index[name] = len(events)
        return hook

    def post_hook(name):
        def hook(module, args, output):
            if name in seen:
                seen[name].calls += 1
                return
            if name not in pending:
                return
            if not isinstance(output, torch.Tensor):
                errors.append("%s (%s) returned %s, not a tensor"
                              % (_display(name), type(module).__name__, type(output).__name__))
                return
            # Clone now: an inplace ReLU or `out += identity` after this
            # module would change the tensor the probe refers to.
            seen[name] = Probe(pending.pop(name), output.detach().clone(), 1)
        return hook

    def leaf_hook(name):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                events.append((name, output.detach().clone()))
        return hook

    for n, m in mapped:
        handles.append(m.register_forward_pre_hook(pre_hook(n)))
        handles.append(m.register_forward_hook(post_hook(n)))
    if need_outputs:
        for n, m in named:
            if not any(True for _ in m.children()):
                handles.append(m.register_forward_hook(leaf_hook(n)))
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as exc:
        raise ExportError("the model failed on the example input: %s" % _first_line(exc)) from exc
    finally:
        for h in handles:
            h.remove()
    if errors:
        raise ExportError("\n".join(errors))

    # 3. Map the modules that ran, in the order they first ran.
    modules = dict(mapped)
    order = list(seen.keys())
    notes = []  # warned about only once the export is known to go ahead
    for n, _ in mapped:
        if n not in seen:
            result.skipped.append((n, type(modules[n]).__name__,
                                   "not called in the forward pass on the example input"))
            notes.append("%s (%s) was not called in the forward pass on the example input; it "
                         "is left out of the manifest" % (_display(n), type(modules[n]).__name__))
    for n in order:
        m = modules[n]
        probe = seen[n]
        if n in facts.fused_prelus:
            continue  # its slopes are the activation_weight of the layer before it
        try:
            kind, fields, tensors = map_module(m, _batched(probe.input, 4).shape
                                               if probe.input.dim() == 3 else probe.input.shape)
            if kind == "linear" and probe.input.dim() > 2:
                raise Unsupported(
                    "applied to a %d-D input %s; MPS fully connected layers take a vector or a "
                    "flattened [C, H, W] map per batch item" % (probe.input.dim(),
                                                                 list(probe.input.shape)))
            if kind != "linear" and probe.input.dim() not in (3, 4):
                raise Unsupported("called on a %d-D input %s; expected [N, C, H, W]"
                                  % (probe.input.dim(), list(probe.input.shape)))
        except Unsupported as why:
            unsupported.append((n, type(m).__name__, str(why)))
            continue
        # The root module has the qualified name ""; a manifest layer needs a
        # non-empty name.
        layer = LayerPlan(n or kind, m, kind, fields, tensors)
        layer.qualified_name = n
        ndim = 2 if kind == "linear" else 4
        layer.probe = Probe(_batched(probe.input, ndim), _batched(probe.output, ndim), probe.calls)
        if probe.calls > 1:
            notes.append("%s (%s) ran %d times in one forward pass; its probe is from the first "
                         "call" % (_display(n), type(m).__name__, probe.calls))
        result.layers.append(layer)

    # named_modules() order, so reports read like print(model).
    rank = {n: i for i, (n, _) in enumerate(named)}
    if unsupported:
        unsupported.sort(key=lambda u: rank.get(u[0], len(rank)))
        if not allow_unsupported:
            bases = {type(m).__name__: known_base(type(m)) for _, m in named}
            raise UnsupportedModuleError(unsupported, {t.__name__ for t in MAPPED_TYPES}, bases)
        for n, t, reason in unsupported:
            notes.append("skipped %s (%s): %s" % (_display(n), t, reason))
            result.skipped.append((n, t, reason))
    # Activations that are not fused: never silently.
    reported = {n for n, _, _ in not_mps}
    for n, t, reason in not_mps:
        notes.append("%s (%s): %s" % (_display(n), t, reason))
        result.skipped.append((n, t, reason))
    for layer_name in sorted(facts.unfused, key=lambda u: rank.get(u, len(rank))):
        for act in facts.unfused[layer_name]:
            if act.module is not None and act.module in reported:
                continue
            notes.append("%s: the activation after it is not fused: %s"
                         % (_display(layer_name), act.reason))
            if act.module is not None:
                reported.add(act.module)
                result.skipped.append((act.module, act.type_name, act.reason))
    result.skipped.sort(key=lambda u: rank.get(u[0], len(rank)))
    for text in notes:
        _warn(result, text)

    # 4. Connections.
    exported = {layer.qualified_name: layer.name for layer in result.layers}
    unresolved = []  # Linear layers whose input nothing showed: (name, in_features)
    for layer in result.layers:
        act = facts.activations.get(layer.qualified_name)
        if act is not None:
            layer.activation = (act.kind, next(iter(act.params.values()), None))
            layer.activation_params = OrderedDict(act.params)
            if act.prelu is not None:
                layer.tensors.append(("activation_weight", act.prelu.weight))
        if layer.kind == "linear":
            q = layer.qualified_name
            found = _linear_input(layer, facts, inputs, events[:call_index[q]], result)
            if q in overrides:
                given = None if overrides[q] == VECTOR else list(overrides[q])
                if found is not None and _layout(found[0]) != _layout(given):
                    raise ExportError(
                        "%s (Linear): the input shape given for it is %s, but %s shows its "
                        "input is %s" % (layer.name, "a vector" if given is None else given,
                                         found[1], "a vector" if found[0] is None else
                                         "a flattened %s map" % found[0]))
                layer.input_shape = given
            elif found is None:
                unresolved.append((layer.name, layer.fields["in_features"]))
                continue
            else:
                layer.input_shape = found[0]
                if found[2]:
                    _warn(result, found[2])
            if layer.input_shape is not None:
                c, h, w = layer.input_shape
                if c * h * w != layer.fields["in_features"]:
                    raise ExportError("%s (Linear): its input is a flattened %s map, but "
                                      "in_features is %d" % (layer.name, layer.input_shape,
                                                             layer.fields["in_features"]))
        if layer.kind == "batch_norm2d":
            conv = facts.follows.get(layer.qualified_name)
            if conv in exported:
                layer.follows = exported[conv]

    if unresolved:
        raise LinearInputError(unresolved, _no_graph_reason(result))
    if result.route is None:
        _warn_no_graph(result)

    stems = _file_stems([layer.name for layer in result.layers])
    for layer in result.layers:
        layer.file_stem = stems[layer.name]


def _layout(input_shape):
    """What decides a Linear's weight order: a [C, 1, 1] map is a vector."""
    if input_shape is None or list(input_shape[1:]) == [1, 1]:
        return None
    return list(input_shape)


def _no_graph_reason(result):
    if result.route is not None:
        return "the %s graph does not show where it comes from, and no module's 4-D output " \
               "equals it flattened" % result.route
    return "torch.fx could not trace the model (%s), nor torch.jit.trace (%s), and no " \
           "module's 4-D output equals it flattened" % (result.trace_error, result.jit_error)


def _linear_input(layer, facts, inputs, earlier_outputs, result):
    """What feeds a Linear: ([C, H, W] or None for a vector, what showed it,
    a warning to give or None), or None when nothing shows it."""
    q = layer.qualified_name
    if q in facts.input_shapes:
        return list(facts.input_shapes[q]), "the %s graph" % result.route, None
    if q in facts.vectors:
        return None, "the %s graph" % result.route, None
    matched = _match_flattened(layer.probe.input, inputs, earlier_outputs)
    if matched is None:
        return None
    shape, source = matched
    how = "the forward hooks (its input equals the %s flattened)" % source
    return shape, how, (
        "%s (Linear): input_shape %s comes from %s, as %s" % (
            layer.name, shape, how, "torch.fx and torch.jit.trace could not trace the model"
            if result.route is None else "the %s graph does not show it" % result.route))


def _match_flattened(linear_input, inputs, earlier_outputs):
    """Without a graph: ([C, H, W], what it is) of the latest 4-D module
    output (or model input) whose flatten equals the Linear's input exactly,
    or None. earlier_outputs: [(module name, output)]."""
    if linear_input.dim() != 2:
        return None
    n, f = linear_input.shape
    candidates = [("output of %s" % _display(name), t) for name, t in reversed(earlier_outputs)]
    candidates += [("model input", x) for x in inputs if x.dim() == 4]
    for what, t in candidates:
        if t.dim() == 4 and t.shape[0] == n and t.shape[1] * t.shape[2] * t.shape[3] == f and \
                t.dtype == linear_input.dtype and torch.equal(t.reshape(n, f), linear_input):
            return [int(t.shape[1]), int(t.shape[2]), int(t.shape[3])], what
    return None


# The kinds an activation after them is fused into (layers.KINDS).
_FUSING_KINDS = frozenset(kind.name for kind in KINDS if kind.fused_activation)


def _warn_no_graph(result):
    """Without any graph: what is missing, by the layers it affects."""
    why = "torch.fx could not trace the model (%s), nor torch.jit.trace (%s)" % (
        result.trace_error, result.jit_error)
    fusing = [layer.name for layer in result.layers
              if layer.kind in _FUSING_KINDS]
    norms = [layer.name for layer in result.layers if layer.kind == "batch_norm2d"]
    if fusing:
        _warn(result, "%s: no activation is fused into %s; an activation after them must run "
                      "outside MPS's kernels" % (why, _names(fusing)))
    if norms:
        _warn(result, "%s: no batch norm is marked as following its conv, so mpsbc "
                      "--fold-batchnorm folds none of %s" % (why, _names(norms)))


def _names(names, most=8):
    if len(names) <= most:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:most]), len(names) - most)


# ---------------------------------------------------------------------------
# Writing


def _write_tensor(t, path):
    # Exactly what users do today (docs/MANIFEST.md): raw little-endian float32 in
    # PyTorch's own layout; the compiler does every reordering.
    t.detach().cpu().contiguous().numpy().astype("<f4").tofile(path)


def manifest_from_plan(result, name, metadata):
    """The manifest dict for a plan, with paths relative to the manifest."""
    meta = OrderedDict([("exporter", EXPORTER), ("torch", str(torch.__version__))])
    for key in sorted(metadata or {}):
        value = metadata[key]
        if not isinstance(key, str) or not isinstance(value, str):
            raise ExportError("metadata must map strings to strings (the bundle stores text), "
                              "found %r: %r" % (key, value))
        if key in meta:
            raise ExportError("metadata key %r is set by the exporter" % key)
        meta[key] = value
    layers = []
    for layer in result.layers:
        entry = OrderedDict()
        entry["name"] = layer.name
        entry["type"] = layer.kind
        for k, v in layer.fields.items():
            entry[k] = v
            if k == "out_features" and layer.input_shape is not None:
                entry["input_shape"] = list(layer.input_shape)
        for role, _ in layer.tensors:
            entry[role] = "%s.%s.bin" % (layer.file_stem, role)
        if layer.activation is not None:
            entry["activation"] = layer.activation[0]
            for k, v in layer.activation_params.items():
                entry[k] = v
        if layer.follows is not None:
            entry["follows"] = layer.follows
        if layer.probe is not None:
            stem = "%s/%s" % (PROBE_DIR, layer.file_stem)
            entry["probe"] = OrderedDict([
                ("input", stem + ".input.bin"),
                ("input_shape", [int(d) for d in layer.probe.input.shape]),
                ("output", stem + ".output.bin"),
                ("output_shape", [int(d) for d in layer.probe.output.shape]),
            ])
        layers.append(entry)
    manifest = OrderedDict()
    manifest["format"] = MANIFEST_FORMAT
    manifest["name"] = name
    manifest["metadata"] = meta
    manifest["layers"] = layers
    if result.skipped:
        manifest["skipped"] = [OrderedDict([("name", n), ("type", t), ("reason", r)])
                               for n, t, r in result.skipped]
    return manifest


def _referenced_files(manifest):
    files = set()
    for layer in manifest.get("layers", []):
        if not isinstance(layer, dict):
            continue
        for role in TENSOR_ROLES:
            v = layer.get(role)
            if isinstance(v, dict):
                v = v.get("path")
            if isinstance(v, str):
                files.add(v)
        probe = layer.get("probe")
        if isinstance(probe, dict):
            for k in ("input", "output"):
                if isinstance(probe.get(k), str):
                    files.add(probe[k])
    return files


def _previous_files(out_dir):
    """Files a previous mpsb_export run wrote into out_dir, so a re-export
    does not leave stale tensors or probes behind."""
    path = os.path.join(out_dir, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError):
        return set()
    if not isinstance(old, dict) or not isinstance(old.get("metadata"), dict) or \
            old["metadata"].get("exporter") != EXPORTER:
        return set()
    safe = set()
    for rel in _referenced_files(old):
        norm = os.path.normpath(rel)
        if not os.path.isabs(norm) and not norm.startswith(".."):
            safe.add(norm)
    return safe


def write(result, out_dir, name, metadata):
    """Writes the plan's files and manifest.json into out_dir; returns the
    manifest dict."""
    manifest = manifest_from_plan(result, name, metadata)
    os.makedirs(out_dir, exist_ok=True)
    stale = _previous_files(out_dir)
    if any(layer.probe is not None for layer in result.layers):
        os.makedirs(os.path.join(out_dir, PROBE_DIR), exist_ok=True)
    for layer, entry in zip(result.layers, manifest["layers"]):
        for role, t in layer.tensors:
            _write_tensor(t, os.path.join(out_dir, entry[role]))
        if layer.probe is not None:
            _write_tensor(layer.probe.input, os.path.join(out_dir, entry["probe"]["input"]))
            _write_tensor(layer.probe.output, os.path.join(out_dir, entry["probe"]["output"]))
    # The manifest last and by rename: a reader never sees one that points
    # at files not yet written.
    tmp = os.path.join(out_dir, MANIFEST_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, MANIFEST_FILE))
    for rel in sorted(stale - {os.path.normpath(p) for p in _referenced_files(manifest)}):
        try:
            os.remove(os.path.join(out_dir, rel))
        except FileNotFoundError:
            pass
    return manifest


def export(model, example_input, out_dir, name=None, metadata=None, probes=True,
           allow_unsupported=False, input_shape_of=None):
    """Exports `model` as manifest.json + .bin files (+ probes/) in out_dir.

    Runs the model once, in eval mode and without gradients, on
    `example_input` (a tensor or a tuple of tensors). Returns the manifest
    dict that was written. Raises UnsupportedModuleError when a module holds
    weights the manifest cannot describe (unless allow_unsupported: then they
    are warned about and listed under "skipped"), ExportError for other
    problems; nothing is written in either case. A Linear whose input the
    exporter cannot show to be a vector or a flattened map raises
    LinearInputError, unless input_shape_of ({name: (C, H, W) or "vector"})
    says which.
    """
    result = plan(model, example_input, allow_unsupported=allow_unsupported, probes=probes,
                  input_shape_of=input_shape_of)
    if not result.layers:
        raise ExportError("%s has no layer the manifest can describe (%s) that ran on the "
                          "example input" % (type(model).__name__,
                                             ", ".join(k.module.__name__ for k in KINDS)))
    return write(result, out_dir, name if name is not None else type(model).__name__, metadata)
