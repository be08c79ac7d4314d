"""Command line: python -m mpsb_export --model SPEC --out DIR [options].

SPEC is one of
  torchvision:NAME          a torchvision.models builder, random weights
                            (weights=None: nothing is downloaded)
  path/to/file.py:FACTORY   a function in a Python file
  package.module:FACTORY    a function in an importable module
A factory takes no arguments and returns a torch.nn.Module, or a
(module, example_input) pair; --input-shape overrides that input.

Exit status: 0 written, 1 the model cannot be exported, 2 bad command line.
"""

import argparse
import importlib
import importlib.util
import os
import re
import sys
import warnings

import torch

from . import ExportError, ExportWarning, export

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
        import torchvision.models as tvm
        builder = getattr(tvm, attr, None)
        if not callable(builder) or attr.startswith("_") or isinstance(builder, type):
            raise UsageError("--model: torchvision.models has no model builder %r" % attr)
        return (lambda: builder(weights=None)), attr
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
    args = parser.parse_args(argv)

    try:
        metadata = _parse_metadata(args.metadata)
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
                              allow_unsupported=args.allow_unsupported)
            failure = None
        except ExportError as e:
            failure = e
    for w in caught:
        if issubclass(w.category, ExportWarning):
            print("mpsb_export: warning: %s" % w.message, file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if failure is not None:
        print("mpsb_export: %s" % failure, file=sys.stderr)
        return EXIT_EXPORT

    tensors = sum(1 for layer in manifest["layers"]
                  for role in ("weight", "bias", "running_mean", "running_var") if role in layer)
    print("mpsb_export: wrote %s: %d layers, %d tensors%s"
          % (os.path.join(args.out, "manifest.json"), len(manifest["layers"]), tensors,
             ", %d skipped" % len(manifest["skipped"]) if manifest.get("skipped") else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
