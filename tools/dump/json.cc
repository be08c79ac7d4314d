// --json: the documents of docs/DUMP_JSON.md that describe a bundle and its
// layers (the summary, --layer and --stats documents; --diff and --explain
// build theirs from these).
#include "dump_internal.h"

namespace mpsb::dump::detail {

ordered_json shape_json(std::span<const uint64_t> shape) {
  return ordered_json(std::vector<uint64_t>(shape.begin(), shape.end()));
}

// What a tensor is, apart from its role and where it is in the file (also
// what --diff compares of it).
ordered_json tensor_fields(const Tensor& t) {
  ordered_json j;
  j["dtype"] = to_string(t.dtype());
  j["layout"] = to_string(t.layout());
  j["shape"] = shape_json(t.shape());
  j["source_dtype"] = to_string(t.source_dtype());
  j["source_layout"] = to_string(t.source_layout());
  j["source_shape"] = shape_json(t.source_shape());
  j["transform"] = to_string(t.transform());
  return j;
}

ordered_json tensor_json(const Tensor& t, uint64_t segment_offset, bool with_stats) {
  ordered_json j;
  j["role"] = to_string(t.role());
  j.update(tensor_fields(t));
  j["offset"] = t.offset();
  j["file_offset"] = segment_offset + t.offset();
  j["size"] = t.size();
  // A string: JSON numbers lose precision past 2^53 in most readers.
  j["checksum"] = hex64(t.checksum());
  if (with_stats) j["stats"] = stats_json(tensor_stats(t));
  return j;
}

// with_stats reads every weight of the layer; the whole-bundle listing leaves
// it out so that it stays a metadata-only read for any model size.
// What the weight's precision cost, as the compiler measured it against the
// float32 weight; null for layers without a weight or stored exactly.
ordered_json weight_error_json(const Layer& l) {
  const Layer::WeightError e = l.weight_error();
  if (!l.find(TensorRole::kWeight) || e.signal_energy == 0 || e.exact()) return nullptr;
  return {{"max_abs", e.max_abs}, {"sqnr_db", e.sqnr_db()}};
}

ordered_json layer_json(const Layer& l, uint64_t segment_offset, bool with_stats) {
  ordered_json j;
  j["index"] = l.index();
  j["name"] = l.name();
  j["kind"] = to_string(l.kind());
  j["activation"] = to_string(l.activation());
  // Always present, so every layer object has the same keys.
  j["activation_alpha"] = activation_alpha_json(l);
  j["activation_params"] = activation_params_json(l);
  j["quantization"] = to_string(l.quantization());
  j["weight_error"] = weight_error_json(l);
  j["folded_batchnorm"] =
      l.folded_batchnorm().empty() ? ordered_json(nullptr) : ordered_json(l.folded_batchnorm());
  j["params"] = params_json(l);
  // The manifest's groups of a conv stored dense (--legalize); 0 otherwise.
  j["legalized_groups"] = l.legalized_groups();
  j["bytes"] = layer_bytes(l);
  ordered_json tensors = ordered_json::array();
  for (size_t i = 0; i < l.tensor_count(); ++i) {
    tensors.push_back(tensor_json(l.tensor(i), segment_offset, with_stats));
  }
  j["tensors"] = std::move(tensors);
  return j;
}

// The first keys of every document: what schema and which kind of document.
ordered_json document(std::string_view kind) {
  ordered_json j;
  j["schema"] = kJsonSchema;
  j["document"] = kind;
  return j;
}

ordered_json metadata_json(const Bundle& b) {
  ordered_json meta = ordered_json::object();
  for (size_t i = 0; i < b.metadata_count(); ++i) {
    const auto [k, v] = b.metadata(i);
    meta[std::string(k)] = v;
  }
  return meta;
}

// Bundle.skipped_modules: what of the PyTorch model the bundle lacks.
ordered_json skipped_modules_json(const Bundle& b) {
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < b.skipped_module_count(); ++i) {
    const SkippedModule m = b.skipped_module(i);
    out.push_back({{"name", m.name}, {"type", m.type}, {"reason", m.reason}});
  }
  return out;
}

ordered_json bundle_json(const std::string& path, const Bundle& b, bool with_stats) {
  ordered_json j = document(with_stats ? "stats" : "bundle");
  j["file"] = path;
  j["file_size"] = b.file().size();
  j["name"] = b.name();
  j["format_version"] = b.format_version();
  j["producer"] = b.producer();
  j["metadata"] = metadata_json(b);
  j["skipped_modules"] = skipped_modules_json(b);
  j["metadata_size"] = b.metadata_bytes().size();
  j["metadata_checksum"] = hex64(b.metadata_checksum());
  j["segment_alignment"] = b.segment_alignment();
  j["tensor_alignment"] = b.tensor_alignment();
  j["segment_offset"] = b.segment_offset();
  j["segment_size"] = b.segment().size();
  j["segment_checksum"] = hex64(b.segment_checksum());
  j["layer_count"] = b.layer_count();
  j["tensor_count"] = tensor_count(b);
  j["tensor_bytes"] = tensor_bytes(b);
  ordered_json layers = ordered_json::array();
  for (const Layer& l : network_order(b))
    layers.push_back(layer_json(l, b.segment_offset(), with_stats));
  j["layers"] = std::move(layers);
  return j;
}

void print_json(std::ostream& out, const ordered_json& j) {
  // Names come from the file. ensure_ascii escapes every non-ASCII code point
  // (C1 controls and bidi overrides included) as \uXXXX, so the JSON is as
  // safe to show on a terminal as the text output, and every JSON reader
  // still gets the exact name back. Bytes that are not UTF-8 are replaced
  // rather than thrown on.
  out << j.dump(2, ' ', true, ordered_json::error_handler_t::replace) << '\n';
}

}  // namespace mpsb::dump::detail
