"""mpsb.export: the PyTorch exporter (the mpsb_export package), needs torch.

``mpsb.export(model, example_input, "out/")`` is ``mpsb_export.export``; the
module is callable for that. ``python -m mpsb.export`` and the ``mpsb-export``
command are ``python -m mpsb_export``. See tools/export/README.md.
"""

import sys
import types

from mpsb_export import *  # noqa: F401,F403
from mpsb_export import __all__, export  # noqa: F401
from mpsb_export.__main__ import main  # noqa: F401


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """mpsb.export(model, example_input, out_dir, ...): see mpsb_export.export."""
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
