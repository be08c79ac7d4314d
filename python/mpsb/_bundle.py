"""Bundle, Layer and Tensor: the runtime's views of a mapped .mpsb file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple, Union

import numpy as np

from . import _core

# Stored dtype -> numpy dtype. numpy has no bfloat16: its raw bits come as
# uint16 (shift left by 16 and view as float32 to get the values).
_NUMPY_DTYPES = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.uint16),
    "uint8": np.dtype(np.uint8),
}


@dataclass(frozen=True)
class ConvParams:
    """Parameters of a conv2d or conv_transpose2d layer, (h, w) pairs."""

    in_channels: int
    out_channels: int
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    output_padding: Tuple[int, int]


@dataclass(frozen=True)
class LinearParams:
    """Parameters of a linear layer; input_chw is set after a flatten."""

    in_features: int
    out_features: int
    input_chw: Optional[Tuple[int, int, int]]


@dataclass(frozen=True)
class NormParams:
    """Parameters of a normalization layer (batch, instance or group norm);
    for a prelu layer, ``num_features`` is its channel count."""

    num_features: int
    eps: float
    num_groups: int = 0  # group_norm only


Params = Union[ConvParams, LinearParams, NormParams, None]


def _params(kind: str, d: dict) -> Params:
    # The C++ side names the kind's parameter table (runtime/include/mpsb/kinds.h).
    d = dict(d)
    table = d.pop("table", None)
    if table == "conv":
        return ConvParams(**d)
    if table == "linear":
        return LinearParams(**d)
    if table == "norm":
        return NormParams(**d)
    return None


class Tensor:
    """One stored tensor of a layer.

    ``shape``/``layout``/``dtype`` describe the stored (MPS) order,
    ``source_*`` the PyTorch tensor it was made from, ``transform`` the
    rule between the two (``compiler/include/mpsbc/layout.h``). ``offset`` is
    from the start of the data segment, ``file_offset`` from the start of the
    file; ``checksum`` is the compiler's XXH3-64 of the stored bytes.
    """

    __slots__ = ("_core", "_layer", "_i", "role", "dtype", "layout", "shape", "source_dtype",
                 "source_layout", "source_shape", "transform", "offset", "file_offset", "size",
                 "checksum", "element_count")

    def __init__(self, core: _core.Bundle, layer: "Layer", i: int, d: dict) -> None:
        self._core = core
        self._layer = layer
        self._i = i
        self.role: str = d["role"]
        self.dtype: str = d["dtype"]
        self.layout: str = d["layout"]
        self.shape: Tuple[int, ...] = d["shape"]
        self.source_dtype: str = d["source_dtype"]
        self.source_layout: str = d["source_layout"]
        self.source_shape: Tuple[int, ...] = d["source_shape"]
        self.transform: str = d["transform"]
        self.offset: int = d["offset"]
        self.file_offset: int = d["file_offset"]
        self.size: int = d["size"]
        self.checksum: int = d["checksum"]
        self.element_count: int = d["element_count"]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of numpy() (bfloat16 as its raw uint16 bits)."""
        return _NUMPY_DTYPES[self.dtype]

    def numpy(self) -> np.ndarray:
        """The stored tensor as a read-only numpy array over the mapping.

        No copy: the array is a view of the mapped file in the stored layout
        and dtype (float32, float16, uint8; bfloat16 as uint16 bits). Its
        ``base`` is the runtime bundle, so the mapping stays valid as long as
        the array lives, even after the Bundle object is gone. Reading it may
        fault pages in from the file.
        """
        arr = np.frombuffer(self._core, dtype=self.numpy_dtype, count=self.element_count,
                            offset=self.file_offset)
        return arr.reshape(self.shape)

    def to_source(self, verify: bool = True) -> np.ndarray:
        """A new, writable array in the source (PyTorch) shape and order.

        Inverted by the runtime's C++ layout module, the same code path as
        ``mpsb-dump --extract``. The dtype is the source's whenever the
        stored values give it back exactly (the same dtype, or float16 /
        bfloat16 sources the compiler widened to float32), so ``arr.tobytes()``
        is the exporter's ``.bin``; otherwise (float16 rounded from float32,
        uint8 codes) it is the stored dtype. bfloat16 comes as uint16 bits.
        With ``verify`` (default) the layer's checksums are checked first,
        as --extract does.
        """
        raw = self._core.to_source(self._layer.sorted_index, self._i, verify)
        arr = raw.view(self.numpy_dtype).reshape(self.source_shape)
        if self.dtype == "float32" and self.source_dtype == "float16":
            return arr.astype(np.float16)  # exact: the values were float16
        if self.dtype == "float32" and self.source_dtype == "bfloat16":
            return (arr.view(np.uint32) >> 16).astype(np.uint16)  # exact: the low bits are 0
        return arr

    def __repr__(self) -> str:
        return "<mpsb.Tensor %s.%s %s %s %s>" % (self._layer.name, self.role, self.dtype,
                                                  self.layout, list(self.shape))


class Layer:
    """One layer: its kind, activation, parameters and tensors."""

    __slots__ = ("name", "index", "sorted_index", "kind", "activation", "activation_alpha",
                 "activation_beta", "quantization", "folded_batchnorm", "legalized_groups",
                 "params", "tensors")

    def __init__(self, core: _core.Bundle, d: dict) -> None:
        self.name: str = d["name"]
        #: Position in the manifest (network order).
        self.index: int = d["index"]
        #: Position in the bundle's name order.
        self.sorted_index: int = d["sorted_index"]
        self.kind: str = d["kind"]
        self.activation: str = d["activation"]
        self.activation_alpha: float = d["activation_alpha"]
        self.activation_beta: float = d["activation_beta"]
        self.quantization: str = d["quantization"]
        #: The manifest's batch_norm2d that ``mpsbc --fold-batchnorm`` folded
        #: into this conv (its weight and bias are then not PyTorch's), or None.
        self.folded_batchnorm: Optional[str] = d["folded_batchnorm"]
        #: A conv MPS refuses stored dense (``mpsbc --legalize``): the
        #: manifest's groups, while params.groups is 1. 0 for every other layer.
        self.legalized_groups: int = d["legalized_groups"]
        self.params: Params = _params(self.kind, d["params"])
        self.tensors: Tuple[Tensor, ...] = tuple(
            Tensor(core, self, i, t) for i, t in enumerate(d["tensors"]))

    def __getitem__(self, role: str) -> Tensor:
        """The tensor with that role ("weight", "bias", "running_mean", ...)."""
        for t in self.tensors:
            if t.role == role:
                return t
        raise KeyError("layer %r has no %r tensor (it has: %s)" %
                       (self.name, role, ", ".join(t.role for t in self.tensors)))

    def __contains__(self, role: object) -> bool:
        return any(t.role == role for t in self.tensors)

    def __repr__(self) -> str:
        return "<mpsb.Layer %s %s #%d>" % (self.name, self.kind, self.index)


class Bundle:
    """A read-only, memory-mapped .mpsb bundle (use mpsb.open)."""

    def __init__(self, path: Union[str, os.PathLike], verify: bool = False) -> None:
        self._core = _core.Bundle(os.fspath(path), verify)
        info = self._core.info()
        self.path: str = info["path"]
        self.name: str = info["name"]
        self.producer: str = info["producer"]
        self.format_version: int = info["format_version"]
        self.metadata: Dict[str, str] = info["metadata"]
        # Modules of the PyTorch model that are not in the bundle, in the
        # exporter's order: {"name", "type", "reason"} each ("" names the
        # model itself).
        self.skipped_modules: Tuple[Dict[str, str], ...] = tuple(info["skipped_modules"])
        self.segment_alignment: int = info["segment_alignment"]
        self.tensor_alignment: int = info["tensor_alignment"]
        self.segment_offset: int = info["segment_offset"]
        self.segment_size: int = info["segment_size"]
        self.file_size: int = info["file_size"]
        self.metadata_size: int = info["metadata_size"]
        by_name = tuple(Layer(self._core, d) for d in self._core.layers())
        self._by_name = by_name
        self._network = tuple(sorted(by_name, key=lambda l: l.index))
        self._index = {l.name: l for l in by_name}

    @property
    def layers(self) -> Tuple[Layer, ...]:
        """The layers in network (manifest) order."""
        return self._network

    @property
    def layers_by_name(self) -> Tuple[Layer, ...]:
        """The layers in name order (the bundle's sorted order)."""
        return self._by_name

    def tensors(self) -> Iterator[Tuple[str, Tensor]]:
        """("layer.role", tensor) for every tensor, in network order."""
        for l in self._network:
            for t in l.tensors:
                yield "%s.%s" % (l.name, t.role), t

    def verify(self) -> None:
        """Checks every checksum and both digests (reads the whole file).

        Raises BundleError (e.g. code 22, "checksum mismatch") on failure.
        """
        self._core.verify()

    def __getitem__(self, name: str) -> Layer:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError("%s: no layer named %r" % (self.path, name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._network)

    def __len__(self) -> int:
        return len(self._network)

    def __repr__(self) -> str:
        return "<mpsb.Bundle %r %d layers, %d bytes>" % (self.name, len(self), self.file_size)


def open(path: Union[str, os.PathLike], verify: bool = False) -> Bundle:  # noqa: A001
    """Maps a bundle read-only and checks it, as the runtime's Bundle::open.

    Opening reads the metadata only; ``verify=True`` also checks every
    tensor's checksum and the digests (reads the whole file). A file the
    runtime refuses raises BundleError with its code and message.
    """
    return Bundle(path, verify)
