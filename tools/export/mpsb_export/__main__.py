"""Command line: python -m mpsb_export --model SPEC --out DIR [options].

SPEC is one of
  torchvision:NAME          a torchvision.models builder, also of
                            torchvision.models.segmentation and .detection
                            (or torchvision:segmentation.NAME), random
                            weights (weights=None, weights_backbone=None:
                            nothing is downloaded)
  path/to/file.py:FACTORY   a function in a Python file
  package.module:FACTORY    a function in an importable module
A factory takes no arguments and returns a torch.nn.Module, or a
(module, example_input) pair; --input-shape overrides that input.

Exit status: 0 written, 1 the model cannot be exported, 2 bad command line.
"""

import argparse
import importlib
import inspect
import importlib.util
import os
import re
import sys
import warnings

import torch

from . import ExportError, ExportWarning, export
from .exporter import CLI, VECTOR

EXIT_OK, EXIT_EXPORT, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _parse_shape(text):
    try:
        dims = [int(d) for d in re.split(r"[,x]", text.strip())]
    except ValueError:
        raise UsageError("--input-shape: expected comma-separated integers like 1,3,224,224, "
                         "found %r" % text)
    if not dims or any(d <= 0 for d in dims):
        raise UsageError("--input-shape: expected positive integers, found %r" % text)
    return dims


def _parse_input_shape_of(items):
    """--input-shape-of NAME=C,H,W or NAME=vector, repeatable."""
    shapes = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise UsageError("--input-shape-of: expected LAYER=C,H,W or LAYER=vector, found %r"
                             % item)
        if value.strip() == VECTOR:
            shapes[name] = VECTOR
            continue
        try:
            dims = [int(d) for d in value.split(",")]
        except ValueError:
            dims = []
        if len(dims) != 3 or any(d <= 0 for d in dims):
            raise UsageError("--input-shape-of %s: expected three positive integers C,H,W "
                             "(like 8,3,5) or \"vector\", found %r" % (name, value))
        shapes[name] = tuple(dims)
    return shapes


# Where --model torchvision:NAME looks, in this order.
_TORCHVISION_PACKAGES = ("", "segmentation", "detection")


def _torchvision_builder(attr):
    package, _, name = attr.rpartition(".")
    packages = [package] if package else _TORCHVISION_PACKAGES
    for where in packages:
        if where not in _TORCHVISION_PACKAGES:
            break
        module = importlib.import_module("torchvision.models" + ("." + where if where else ""))
        builder = getattr(module, name, None)
        if callable(builder) and not name.startswith("_") and not isinstance(builder, type):
            return builder
    raise UsageError("--model: torchvision.models has no model builder %r (looked in %s)"
                     % (attr, ", ".join("torchvision.models" + ("." + p if p else "")
                                        for p in _TORCHVISION_PACKAGES)))


def _no_download_kwargs(builder):
    """weights=None and, where the builder has one, weights_backbone=None:
    random weights, nothing downloaded."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {"weights": None}
    if "weights_backbone" in params:
        kwargs["weights_backbone"] = None
    return kwargs


def _parse_metadata(items):
    meta = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError("--metadata: expected KEY=VALUE, found %r" % item)
        meta[key] = value
    return meta


def _load_factory(spec):
    """(callable, default name) for a --model SPEC."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise UsageError("--model: expected torchvision:NAME, path/to/file.py:FACTORY or "
                         "module:FACTORY, found %r" % spec)
    if where == "torchvision":
        builder = _torchvision_builder(attr)
        kwargs = _no_download_kwargs(builder)
        return (lambda: builder(**kwargs)), attr.rpartition(".")[2]
    if where.endswith(".py") or os.sep in where:
        if not os.path.isfile(where):
            raise UsageError("--model: no such file %r" % where)
        mod_name = "_mpsb_export_user_" + os.path.splitext(os.path.basename(where))[0]
        loader_spec = importlib.util.spec_from_file_location(mod_name, where)
        module = importlib.util.module_from_spec(loader_spec)
        # Let the file import its neighbours, as `python file.py` would.
        sys.path.insert(0, os.path.dirname(os.path.abspath(where)))
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError("--model: %s has no callable %r" % (where, attr))
    name = attr[len("make_"):] if attr.startswith("make_") else attr
    return factory, name


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mpsb_export",
        description="Export a PyTorch model as an mpsb manifest, .bin tensors and probes.")
    parser.add_argument("--model", required=True,
                        help="torchvision:NAME, path/to/file.py:FACTORY or module:FACTORY")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--input-shape", help="example input shape, e.g. 1,3,224,224 "
                        "(random normal values under --seed)")
    parser.add_argument("--seed", type=int, default=0,
                        help="torch.manual_seed before building the model and the input "
                             "(default 0)")
    parser.add_argument("--name", help="manifest name (default: the model's name)")
    parser.add_argument("--metadata", action="append", metavar="KEY=VALUE",
                        help="extra manifest metadata; repeatable")
    parser.add_argument("--no-probes", action="store_true",
                        help="do not write per-layer probes (mpsbc --check needs them)")
    parser.add_argument("--allow-unsupported", action="store_true",
                        help="skip modules that cannot be exported, with a warning, instead of "
                             "failing")
    parser.add_argument("--input-shape-of", action="append", metavar="LAYER=C,H,W",
                        help="what feeds Linear LAYER: a flattened C,H,W feature map, or "
                             "LAYER=vector; for when the exporter cannot find it out; "
                             "repeatable")
    args = parser.parse_args(argv)

    try:
        metadata = _parse_metadata(args.metadata)
        input_shape_of = _parse_input_shape_of(args.input_shape_of)
        shape = _parse_shape(args.input_shape) if args.input_shape else None
        factory, default_name = _load_factory(args.model)
    except UsageError as e:
        print("mpsb_export: %s" % e, file=sys.stderr)
        return EXIT_USAGE

    torch.manual_seed(args.seed)
    made = factory()
    example = None
    model = made
    if isinstance(made, tuple) and len(made) == 2:
        model, example = made
    if not isinstance(model, torch.nn.Module):
        print("mpsb_export: %s returned %s, not a torch.nn.Module" % (args.model,
              type(model).__name__), file=sys.stderr)
        return EXIT_USAGE
    if shape is not None:
        example = torch.randn(*shape)
    if example is None:
        print("mpsb_export: --input-shape is needed (%s returns no example input)" % args.model,
              file=sys.stderr)
        return EXIT_USAGE

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        try:
            manifest = export(model, example, args.out, name=args.name or default_name,
                              metadata=metadata, probes=not args.no_probes,
                              allow_unsupported=args.allow_unsupported,
                              input_shape_of=input_shape_of)
            failure = None
        except ExportError as e:
            failure = e
    for w in caught:
        if issubclass(w.category, ExportWarning):
            print("mpsb_export: warning: %s" % w.message, file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if failure is not None:
        print("mpsb_export: %s" % failure.describe(CLI), file=sys.stderr)
        return EXIT_EXPORT

    tensors = sum(1 for layer in manifest["layers"]
                  for role in ("weight", "bias", "running_mean", "running_var") if role in layer)
    print("mpsb_export: wrote %s: %d layers, %d tensors%s"
          % (os.path.join(args.out, "manifest.json"), len(manifest["layers"]), tensors,
             ", %d skipped" % len(manifest["skipped"]) if manifest.get("skipped") else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
