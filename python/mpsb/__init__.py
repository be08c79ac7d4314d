"""mpsb: read .mpsb bundles from Python over the C++ runtime, and the tool chain.

    import mpsb
    b = mpsb.open("model.mpsb")
    w = b["conv1"]["weight"]
    w.numpy()       # read-only view of the mapping, stored (MPS) layout
    w.to_source()   # a copy in PyTorch layout: the exporter's .bin bytes

The exporter is ``mpsb.export`` (needs torch): ``mpsb.export(model, x, "out/")``
or ``python -m mpsb.export``. The commands ``mpsbc``, ``mpsb-dump`` and
``mpsb-export`` come with the package.
"""

from typing import Any

from ._bundle import Bundle, ConvParams, Layer, LinearParams, NormParams, Tensor, open
from ._errors import BundleError
from . import _core

__version__ = "0.1.0"
#: The version of the C++ runtime this package was built with.
runtime_version: str = _core.version()

__all__ = ["Bundle", "BundleError", "ConvParams", "Layer", "LinearParams", "NormParams", "Tensor",
           "export", "open", "runtime_version"]


def __getattr__(name: str) -> Any:
    # mpsb.export imports torch: only when asked for.
    if name == "export":
        import importlib
        return importlib.import_module(".export", __name__)
    raise AttributeError("module 'mpsb' has no attribute %r" % name)
