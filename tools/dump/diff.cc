// --diff A B: what changed from bundle A to bundle B, layer by layer and
// tensor by tensor, with value differences where the shapes allow.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "dump_internal.h"

namespace mpsb::dump::detail {
namespace {

// One field that differs, values as JSON so that any field type prints.
struct FieldChange {
  std::string field;
  ordered_json a, b;
};

enum class Change { kAdded, kRemoved, kChanged };

std::string_view to_string(Change s) {
  switch (s) {
    case Change::kAdded:
      return "added";
    case Change::kRemoved:
      return "removed";
    case Change::kChanged:
      return "changed";
  }
  return "changed";
}

struct DataDiff {
  uint64_t elements = 0;
  uint64_t differing = 0;
  // Largest |a - b| over the element pairs where both are finite.
  double max_abs_diff = 0;
};

struct TensorDiff {
  std::string role;
  Change status = Change::kChanged;
  std::vector<FieldChange> fields;
  bool bytes_differ = false;
  // Set when the stored shapes are equal and both dtypes are floats (or
  // both uint8): then the values were compared element by element.
  std::optional<DataDiff> data;
};

struct LayerDiff {
  std::string name;
  std::string kind;  // in B, or in A when removed
  Change status = Change::kChanged;
  std::vector<FieldChange> fields;
  std::vector<TensorDiff> tensors;
};

struct BundleDiff {
  std::vector<FieldChange> header;
  std::vector<LayerDiff> layers;
  size_t layers_added = 0, layers_removed = 0, layers_changed = 0;
  size_t tensors_added = 0, tensors_removed = 0, tensors_changed = 0;
  bool identical() const { return header.empty() && layers.empty(); }
};

// Adds a FieldChange for every key of the flat objects `a` and `b` whose
// values differ; nested objects are compared key by key as "outer.inner".
void diff_fields(const ordered_json& a, const ordered_json& b, const std::string& prefix,
                 std::vector<FieldChange>* out) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.push_back(k);
  for (const auto& [k, v] : b.items()) {
    if (!a.contains(k)) keys.push_back(k);
  }
  for (const std::string& k : keys) {
    const ordered_json va = a.contains(k) ? a.at(k) : ordered_json(nullptr);
    const ordered_json vb = b.contains(k) ? b.at(k) : ordered_json(nullptr);
    if (va.is_object() && vb.is_object()) {
      diff_fields(va, vb, prefix + k + ".", out);
    } else if (va != vb) {
      out->push_back({prefix + k, va, vb});
    }
  }
}

// What the diff compares of a layer: everything but its tensors and bytes.
ordered_json layer_fields(const Layer& l) {
  ordered_json j;
  j["index"] = l.index();
  j["kind"] = to_string(l.kind());
  j["activation"] = to_string(l.activation());
  j["activation_alpha"] = l.activation_alpha();
  j["activation_beta"] = l.activation_beta();
  j["quantization"] = to_string(l.quantization());
  j["weight_error"] = weight_error_json(l);
  // A folded and an unfolded conv differ in what their weights mean.
  j["folded_batchnorm"] = l.folded_batchnorm();
  j["params"] = params_json(l);
  j["legalized_groups"] = l.legalized_groups();
  return j;
}

bool is_float(DType d) { return d != DType::kUInt8; }

std::optional<TensorDiff> diff_tensor(const Tensor& a, const Tensor& b) {
  TensorDiff d;
  d.role = to_string(a.role());
  diff_fields(tensor_fields(a), tensor_fields(b), "", &d.fields);
  const auto ba = a.bytes(), bb = b.bytes();
  d.bytes_differ = ba.size() != bb.size() || std::memcmp(ba.data(), bb.data(), ba.size()) != 0;
  const auto sa = a.shape(), sb = b.shape();  // (std::equal: libc++ 14 has no ranges::equal)
  const bool same_shape = std::equal(sa.begin(), sa.end(), sb.begin(), sb.end());
  if (same_shape && is_float(a.dtype()) == is_float(b.dtype()) &&
      (d.bytes_differ || a.dtype() != b.dtype())) {
    DataDiff dd;
    dd.elements = a.element_count();
    for (uint64_t i = 0; i < dd.elements; ++i) {
      const double x = element(a.dtype(), ba.data(), i);
      const double y = element(b.dtype(), bb.data(), i);
      if (x == y || (std::isnan(x) && std::isnan(y))) continue;
      ++dd.differing;
      if (std::isfinite(x) && std::isfinite(y)) {
        dd.max_abs_diff = std::max(dd.max_abs_diff, std::fabs(x - y));
      }
    }
    d.data = dd;
  }
  if (d.fields.empty() && !d.bytes_differ) return std::nullopt;
  return d;
}

BundleDiff diff_bundles(const Bundle& a, const Bundle& b) {
  BundleDiff d;
  const auto header = [](const Bundle& x) {
    ordered_json j;
    j["name"] = x.name();
    j["format_version"] = x.format_version();
    j["producer"] = x.producer();
    j["metadata"] = metadata_json(x);
    j["segment_alignment"] = x.segment_alignment();
    j["tensor_alignment"] = x.tensor_alignment();
    // What of the PyTorch model the bundle lacks: one value, so a changed
    // list is one change.
    j["skipped_modules"] = skipped_modules_json(x);
    return j;
  };
  diff_fields(header(a), header(b), "", &d.header);

  // B's network order first, so the listing reads like the new model; then
  // what B no longer has, in A's order.
  for (const Layer& lb : network_order(b)) {
    const std::optional<Layer> la = a.find(lb.name());
    LayerDiff ld;
    ld.name = lb.name();
    ld.kind = to_string(lb.kind());
    if (!la) {
      ld.status = Change::kAdded;
      ++d.layers_added;
      d.layers.push_back(std::move(ld));
      continue;
    }
    diff_fields(layer_fields(*la), layer_fields(lb), "", &ld.fields);
    for (size_t i = 0; i < lb.tensor_count(); ++i) {
      const Tensor tb = lb.tensor(i);
      const std::optional<Tensor> ta = la->find(tb.role());
      if (!ta) {
        TensorDiff added;
        added.role = to_string(tb.role());
        added.status = Change::kAdded;
        ld.tensors.push_back(std::move(added));
        ++d.tensors_added;
      } else if (std::optional<TensorDiff> td = diff_tensor(*ta, tb)) {
        ld.tensors.push_back(std::move(*td));
        ++d.tensors_changed;
      }
    }
    for (size_t i = 0; i < la->tensor_count(); ++i) {
      const Tensor ta = la->tensor(i);
      if (!lb.find(ta.role())) {
        TensorDiff removed;
        removed.role = to_string(ta.role());
        removed.status = Change::kRemoved;
        ld.tensors.push_back(std::move(removed));
        ++d.tensors_removed;
      }
    }
    if (!ld.fields.empty() || !ld.tensors.empty()) {
      ++d.layers_changed;
      d.layers.push_back(std::move(ld));
    }
  }
  for (const Layer& la : network_order(a)) {
    if (b.find(la.name())) continue;
    LayerDiff ld;
    ld.name = la.name();
    ld.kind = to_string(la.kind());
    ld.status = Change::kRemoved;
    ++d.layers_removed;
    d.layers.push_back(std::move(ld));
  }
  return d;
}

// A JSON value for a text line: strings from the file escaped, numbers as
// JSON writes them.
std::string value_text(const ordered_json& v) {
  if (v.is_null()) return "(none)";
  if (v.is_string()) return "\"" + printable(v.get<std::string>()) + "\"";
  return printable(v.dump(-1, ' ', false, ordered_json::error_handler_t::replace));
}

std::string changes_text(const std::vector<FieldChange>& fields) {
  std::vector<std::string> parts;
  for (const FieldChange& f : fields) {
    parts.push_back(
        fmt::format("{} {} -> {}", printable(f.field), value_text(f.a), value_text(f.b)));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string data_text(const TensorDiff& t) {
  if (t.data) {
    if (t.data->differing == 0) {
      return t.bytes_differ ? "bytes differ, values equal" : "values equal";
    }
    return fmt::format("{} of {} elements differ, max abs diff {:.6g}", t.data->differing,
                       t.data->elements, t.data->max_abs_diff);
  }
  if (!t.bytes_differ) return "bytes equal";
  return "bytes differ (not compared by value: shapes or dtypes differ)";
}

void print_diff(std::ostream& out, const Options& o, const BundleDiff& d, const Style& style) {
  out << style.red("--- " + printable(o.bundle_path)) << '\n'
      << style.green("+++ " + printable(o.other_path)) << '\n';
  if (d.identical()) {
    out << "no differences\n";
    return;
  }
  for (const FieldChange& f : d.header) {
    out << style.yellow("~") << " bundle " << printable(f.field) << ": " << value_text(f.a)
        << " -> " << value_text(f.b) << '\n';
  }
  for (const LayerDiff& l : d.layers) {
    const std::string name = printable(l.name);
    switch (l.status) {
      case Change::kAdded:
        out << style.green("+ layer " + name) << " (" << l.kind << ")\n";
        continue;
      case Change::kRemoved:
        out << style.red("- layer " + name) << " (" << l.kind << ")\n";
        continue;
      case Change::kChanged:
        out << style.yellow("~") << " layer " << name << " (" << l.kind << ")";
        if (!l.fields.empty()) out << ": " << changes_text(l.fields);
        out << '\n';
        break;
    }
    for (const TensorDiff& t : l.tensors) {
      const std::string tname = name + "." + t.role;
      switch (t.status) {
        case Change::kAdded:
          out << "    " << style.green("+ tensor " + tname) << '\n';
          break;
        case Change::kRemoved:
          out << "    " << style.red("- tensor " + tname) << '\n';
          break;
        case Change::kChanged:
          out << "    " << style.yellow("~") << " tensor " << tname << ": ";
          if (!t.fields.empty()) out << changes_text(t.fields) << "; ";
          out << data_text(t) << '\n';
          break;
      }
    }
  }
  out << fmt::format(
      "layers: {} added, {} removed, {} changed; tensors: {} added, {} removed, {} "
      "changed\n",
      d.layers_added, d.layers_removed, d.layers_changed, d.tensors_added, d.tensors_removed,
      d.tensors_changed);
}

ordered_json changes_json(const std::vector<FieldChange>& fields) {
  ordered_json j = ordered_json::array();
  for (const FieldChange& f : fields) j.push_back({{"field", f.field}, {"a", f.a}, {"b", f.b}});
  return j;
}

ordered_json diff_json(const Options& o, const BundleDiff& d) {
  ordered_json j = document("diff");
  j["a"] = o.bundle_path;
  j["b"] = o.other_path;
  j["identical"] = d.identical();
  j["header"] = changes_json(d.header);
  ordered_json layers = ordered_json::array();
  for (const LayerDiff& l : d.layers) {
    ordered_json lj;
    lj["name"] = l.name;
    lj["kind"] = l.kind;
    lj["status"] = to_string(l.status);
    lj["changes"] = changes_json(l.fields);
    ordered_json tensors = ordered_json::array();
    for (const TensorDiff& t : l.tensors) {
      ordered_json tj;
      tj["role"] = t.role;
      tj["status"] = to_string(t.status);
      tj["changes"] = changes_json(t.fields);
      tj["bytes_differ"] = t.status == Change::kChanged && t.bytes_differ;
      if (t.data) {
        tj["data"] = {{"elements", t.data->elements},
                      {"differing", t.data->differing},
                      {"max_abs_diff", t.data->max_abs_diff}};
      } else {
        tj["data"] = nullptr;
      }
      tensors.push_back(std::move(tj));
    }
    lj["tensors"] = std::move(tensors);
    layers.push_back(std::move(lj));
  }
  j["layers"] = std::move(layers);
  j["summary"] = {{"layers_added", d.layers_added},       {"layers_removed", d.layers_removed},
                  {"layers_changed", d.layers_changed},   {"tensors_added", d.tensors_added},
                  {"tensors_removed", d.tensors_removed}, {"tensors_changed", d.tensors_changed}};
  return j;
}

}  // namespace

int run_diff(const Options& o, std::ostream& out, std::ostream& err, const Style& style) {
  Result<Bundle> a = Bundle::open(o.bundle_path);
  if (!a.ok()) {
    err << "mpsb-dump: " << printable(a.message()) << '\n';
    return kExitDiffTrouble;
  }
  Result<Bundle> b = Bundle::open(o.other_path);
  if (!b.ok()) {
    err << "mpsb-dump: " << printable(b.message()) << '\n';
    return kExitDiffTrouble;
  }
  const BundleDiff d = diff_bundles(a.value(), b.value());
  if (o.json) {
    print_json(out, diff_json(o, d));
  } else {
    print_diff(out, o, d, style);
  }
  return d.identical() ? kExitOk : kExitDifferent;
}

}  // namespace mpsb::dump::detail
