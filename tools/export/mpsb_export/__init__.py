"""mpsb_export: a PyTorch model -> an mpsb manifest, its .bin tensors and probes.

    import mpsb_export
    manifest = mpsb_export.export(model, torch.randn(1, 3, 224, 224), "out/")

then `mpsbc compile out/manifest.json -o model.mpsb --check`. See
tools/export/README.md for what is mapped and the probe format.
"""

from .exporter import (
    EXPORTER,
    MANIFEST_FORMAT,
    ExportError,
    ExportPlan,
    ExportWarning,
    LayerPlan,
    LinearInputError,
    Probe,
    UnsupportedModuleError,
    export,
    manifest_from_plan,
    plan,
)

__version__ = "0.1.0"

__all__ = [
    "EXPORTER",
    "MANIFEST_FORMAT",
    "ExportError",
    "ExportPlan",
    "ExportWarning",
    "LayerPlan",
    "LinearInputError",
    "Probe",
    "UnsupportedModuleError",
    "export",
    "manifest_from_plan",
    "plan",
]
