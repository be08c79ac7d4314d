// mpsb._core: the runtime's Bundle as a Python object.
//
// Only the public runtime API (runtime/include/mpsb) and the compiler's
// layout module (mpsbc/layout.h, the one inverse transform mpsb-dump
// --extract uses) are called; nothing here parses a bundle itself.
//
// The Bundle object exports the whole mapped file through the buffer
// protocol, read-only. python/mpsb/_bundle.py builds each tensor's array
// with numpy.frombuffer over it, so every array is a view of the mapping
// whose base is this object: the mapping lives as long as any array does.
// Runtime failures raise mpsb.BundleError (python/mpsb/_errors.py) with the
// runtime's error number, its name and the runtime's message.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/kinds.h"
#include "mpsb/result.h"
#include "mpsb/types.h"
#include "mpsbc/layout.h"

namespace nb = nanobind;

namespace {

// Carries a runtime failure to the exception translator.
struct RuntimeFailure {
  mpsb::Error error;
  std::string message;
};

[[noreturn]] void fail(mpsb::Error error, std::string message) {
  throw RuntimeFailure{error, std::move(message)};
}

void check(const mpsb::Status& s) {
  if (!s.ok()) fail(s.error(), s.message());
}

nb::tuple shape_tuple(std::span<const uint64_t> shape) {
  nb::list out;
  for (const uint64_t d : shape) out.append(d);
  return nb::tuple(out);
}

nb::dict tensor_info(const mpsb::Tensor& t, uint64_t segment_offset) {
  nb::dict d;
  d["role"] = mpsb::to_string(t.role());
  d["dtype"] = mpsb::to_string(t.dtype());
  d["layout"] = mpsb::to_string(t.layout());
  d["shape"] = shape_tuple(t.shape());
  d["source_dtype"] = mpsb::to_string(t.source_dtype());
  d["source_layout"] = mpsb::to_string(t.source_layout());
  d["source_shape"] = shape_tuple(t.source_shape());
  d["transform"] = mpsb::to_string(t.transform());
  d["offset"] = t.offset();
  d["file_offset"] = segment_offset + t.offset();
  d["size"] = t.size();
  d["checksum"] = t.checksum();
  d["element_count"] = t.element_count();
  return d;
}

// The layer's parameter table, by the kind's entry in mpsb/kinds.h; the
// switch fails to build when a table is added and not handled here.
nb::dict params(const mpsb::Layer& l) {
  nb::dict d;
  switch (mpsb::kind_spec(l.kind()).params) {
    case mpsb::ParamTable::kConv: {
      const mpsb::ConvParams c = l.conv();
      d["table"] = "conv";
      d["in_channels"] = c.in_channels;
      d["out_channels"] = c.out_channels;
      d["kernel"] = nb::make_tuple(c.kernel_h, c.kernel_w);
      d["stride"] = nb::make_tuple(c.stride_h, c.stride_w);
      d["padding"] = nb::make_tuple(c.padding_h, c.padding_w);
      d["dilation"] = nb::make_tuple(c.dilation_h, c.dilation_w);
      d["groups"] = c.groups;
      d["output_padding"] = nb::make_tuple(c.output_padding_h, c.output_padding_w);
      break;
    }
    case mpsb::ParamTable::kLinear: {
      const mpsb::LinearParams p = l.linear();
      d["table"] = "linear";
      d["in_features"] = p.in_features;
      d["out_features"] = p.out_features;
      if (p.flattened())
        d["input_chw"] = nb::make_tuple(p.input_c, p.input_h, p.input_w);
      else
        d["input_chw"] = nb::none();
      break;
    }
    case mpsb::ParamTable::kNorm:
    case mpsb::ParamTable::kGroupNorm:
    case mpsb::ParamTable::kChannels: {
      const mpsb::NormParams n = l.norm();
      d["table"] = "norm";
      d["num_features"] = n.num_features;
      d["eps"] = n.eps;
      d["num_groups"] = n.num_groups;
      break;
    }
    case mpsb::ParamTable::kNone:  // a probe file's layer: its tensors' shapes
      d["table"] = "none";
      break;
  }
  return d;
}

nb::dict layer_info(const mpsb::Layer& l, size_t sorted_index, uint64_t segment_offset) {
  nb::dict d;
  d["name"] = std::string(l.name());
  d["index"] = l.index();
  d["sorted_index"] = sorted_index;
  d["kind"] = mpsb::to_string(l.kind());
  d["activation"] = mpsb::to_string(l.activation());
  d["activation_alpha"] = l.activation_alpha();
  d["activation_beta"] = l.activation_beta();
  d["quantization"] = mpsb::to_string(l.quantization());
  if (l.folded_batchnorm().empty()) {
    d["folded_batchnorm"] = nb::none();
  } else {
    d["folded_batchnorm"] = std::string(l.folded_batchnorm());
  }
  d["legalized_groups"] = l.legalized_groups();
  d["params"] = params(l);
  nb::list tensors;
  for (size_t i = 0; i < l.tensor_count(); ++i)
    tensors.append(tensor_info(l.tensor(i), segment_offset));
  d["tensors"] = tensors;
  return d;
}

class PyBundle {
 public:
  PyBundle(const std::string& path, bool verify) : bundle_(open(path, verify)), path_(path) {}

  const mpsb::Bundle& get() const { return bundle_; }
  const std::string& path() const { return path_; }

  nb::dict info() const {
    nb::dict d;
    d["path"] = path_;
    d["name"] = std::string(bundle_.name());
    d["producer"] = std::string(bundle_.producer());
    d["format_version"] = bundle_.format_version();
    nb::dict meta;
    for (size_t i = 0; i < bundle_.metadata_count(); ++i) {
      const auto [k, v] = bundle_.metadata(i);
      meta[nb::str(k.data(), k.size())] = nb::str(v.data(), v.size());
    }
    d["metadata"] = meta;
    nb::list skipped;
    for (size_t i = 0; i < bundle_.skipped_module_count(); ++i) {
      const mpsb::SkippedModule m = bundle_.skipped_module(i);
      nb::dict e;
      e["name"] = nb::str(m.name.data(), m.name.size());
      e["type"] = nb::str(m.type.data(), m.type.size());
      e["reason"] = nb::str(m.reason.data(), m.reason.size());
      skipped.append(e);
    }
    d["skipped_modules"] = skipped;
    d["segment_alignment"] = bundle_.segment_alignment();
    d["tensor_alignment"] = bundle_.tensor_alignment();
    d["segment_offset"] = bundle_.segment_offset();
    d["segment_size"] = bundle_.segment().size();
    d["file_size"] = bundle_.file().size();
    d["metadata_size"] = bundle_.metadata_bytes().size();
    return d;
  }

  // Every layer, in name order (the bundle's sorted order).
  nb::list layers() const {
    nb::list out;
    const uint64_t seg = bundle_.segment_offset();
    for (size_t i = 0; i < bundle_.layer_count(); ++i)
      out.append(layer_info(bundle_.layer(i), i, seg));
    return out;
  }

  void verify() const { check(bundle_.verify()); }
  void verify_layer(size_t sorted_index) const { check(bundle_.verify_layer(layer(sorted_index))); }

  // The tensor in source (PyTorch) order, in its stored dtype, as a new
  // uint8 array: the same plan_from_stored + invert as mpsb-dump --extract.
  nb::ndarray<nb::numpy, uint8_t> to_source(size_t sorted_index, size_t tensor_index,
                                            bool verify) const {
    const mpsb::Layer l = layer(sorted_index);
    if (tensor_index >= l.tensor_count())
      fail(mpsb::Error::kInvalidArgument, path_ + ": layer '" + std::string(l.name()) +
                                              "' has no tensor " + std::to_string(tensor_index));
    const mpsb::Tensor t = l.tensor(tensor_index);
    // As --extract does: never hand back bytes that no longer match their
    // checksum as if they were the original.
    if (verify) check(bundle_.verify_layer(l));
    std::string why;
    const std::optional<mpsbc::TensorPlan> plan = mpsbc::plan_from_stored(
        t.transform(), t.source_layout(), t.source_shape(), t.layout(), t.shape(), &why);
    if (!plan)
      fail(mpsb::Error::kBadField, path_ + ": " + std::string(l.name()) + "." +
                                       std::string(mpsb::to_string(t.role())) +
                                       ": cannot invert the stored layout: " + why);
    // Source elements: fewer than stored for a broadcast and for a grouped
    // conv stored dense.
    const size_t n =
        static_cast<size_t>(plan->source_element_count() * mpsb::dtype_size(t.dtype()));
    auto* out = new uint8_t[n];
    nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<uint8_t*>(p); });
    mpsbc::invert(*plan, t.data(), out, mpsb::dtype_size(t.dtype()));
    const size_t shape[1] = {n};
    return nb::ndarray<nb::numpy, uint8_t>(out, 1, shape, owner);
  }

  static int get_buffer(PyObject* self, Py_buffer* view, int flags) {
    if (flags & PyBUF_WRITABLE) {
      PyErr_SetString(PyExc_BufferError, "an mpsb bundle is read-only");
      view->obj = nullptr;
      return -1;
    }
    const PyBundle* b = nb::inst_ptr<PyBundle>(self);
    const std::span<const std::byte> file = b->bundle_.file();
    return PyBuffer_FillInfo(view, self, const_cast<std::byte*>(file.data()),
                             static_cast<Py_ssize_t>(file.size()), /*readonly=*/1, flags);
  }

 private:
  static mpsb::Bundle open(const std::string& path, bool verify) {
    mpsb::OpenOptions options;
    options.verify_checksums = verify;
    mpsb::Result<mpsb::Bundle> r = mpsb::Bundle::open(path, options);
    if (!r.ok()) fail(r.error(), r.message());
    return std::move(r).value();
  }

  mpsb::Layer layer(size_t sorted_index) const {
    if (sorted_index >= bundle_.layer_count())
      fail(mpsb::Error::kInvalidArgument,
           path_ + ": no layer at sorted index " + std::to_string(sorted_index));
    return bundle_.layer(sorted_index);
  }

  mpsb::Bundle bundle_;
  std::string path_;
};

PyType_Slot bundle_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(&PyBundle::get_buffer)},
    {0, nullptr},
};

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "The mpsb runtime (C++) as seen from Python; use the mpsb package, not this.";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const RuntimeFailure& f) {
      nb::object type = nb::module_::import_("mpsb._errors").attr("BundleError");
      nb::object e =
          type(static_cast<int>(f.error), std::string(mpsb::to_string(f.error)), f.message);
      PyErr_SetObject(type.ptr(), e.ptr());
    }
  });

  nb::class_<PyBundle>(m, "Bundle", nb::type_slots(bundle_slots))
      .def(nb::init<const std::string&, bool>(), nb::arg("path"), nb::arg("verify") = false)
      .def_prop_ro("path", &PyBundle::path)
      .def("info", &PyBundle::info)
      .def("layers", &PyBundle::layers)
      .def("verify", &PyBundle::verify)
      .def("verify_layer", &PyBundle::verify_layer, nb::arg("sorted_index"))
      .def("to_source", &PyBundle::to_source, nb::arg("sorted_index"), nb::arg("tensor_index"),
           nb::arg("verify") = true);

  m.def("version", [] { return std::string(mpsb::version()); });
  // Error numbers and names, for mpsb.BundleError's documentation and tests.
  m.def("error_name",
        [](int e) { return std::string(mpsb::to_string(static_cast<mpsb::Error>(e))); });
}
