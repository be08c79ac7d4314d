// --layer NAME: every field of one layer and its tensors (or the "layer"
// JSON document).
#include <fmt/format.h>

#include "dump_internal.h"

namespace mpsb::dump::detail {
namespace {

void print_layer(std::ostream& out, const Bundle& b, const Layer& l, const Style& style) {
  Fields f;
  f.add("layer", printable(l.name()));
  f.add("index", fmt::format("{}", l.index()));
  f.add("kind", std::string(to_string(l.kind())));
  if (!l.folded_batchnorm().empty()) {
    f.add("folded", fmt::format("batch norm '{}': weight and bias hold W·s and b·s + β − μ·s "
                                "(--fold-batchnorm), not PyTorch's",
                                printable(l.folded_batchnorm())));
  }
  add_param_fields(&f, l);
  add_activation_fields(&f, l);
  if (const uint32_t g = l.legalized_groups(); g != 0) {
    f.add("legalized", fmt::format("groups {} stored as the equivalent dense conv (groups 1, "
                                   "block-diagonal weight; mpsbc --legalize)",
                                   g));
  }
  f.add("quantization", std::string(to_string(l.quantization())));
  if (const Layer::WeightError e = l.weight_error(); !e.exact()) {
    f.add("weight error", fmt::format("max abs {:.3g}, SQNR {:.1f} dB (vs the float32 weight)",
                                      e.max_abs, e.sqnr_db()));
  }
  f.add("tensors", fmt::format("{} ({} bytes)", l.tensor_count(), layer_bytes(l)));
  f.print(out);
  for (size_t i = 0; i < l.tensor_count(); ++i) {
    const Tensor t = l.tensor(i);
    out << '\n'
        << style.bold(fmt::format("{}.{}", printable(l.name()), to_string(t.role()))) << '\n';
    Fields tf(2);
    tf.add("stored", fmt::format("{} {} {}", to_string(t.dtype()), to_string(t.layout()),
                                 shape_text(t.shape())));
    tf.add("source",
           fmt::format("{} {} {}{}", to_string(t.source_dtype()), to_string(t.source_layout()),
                       shape_text(t.source_shape()),
                       holds_folded_values(l, t) ? fmt::format(", folded with batch norm '{}'",
                                                               printable(l.folded_batchnorm()))
                                                 : ""));
    tf.add("transform", std::string(to_string(t.transform())));
    tf.add("elements", fmt::format("{}", t.element_count()));
    tf.add("offset",
           fmt::format("{} (file offset {})", t.offset(), b.segment_offset() + t.offset()));
    tf.add("size", fmt::format("{}", t.size()));
    tf.add("checksum", hex64(t.checksum()));
    const TensorStats st = tensor_stats(t);
    tf.add("values", stats_text(st));
    if (st.finite > 0) {
      tf.add("histogram", fmt::format("{}  {} bins over [{:.6g}, {:.6g}]",
                                      histogram_cell(st, style), kHistogramBins, st.min, st.max));
    }
    tf.print(out);
  }
}

}  // namespace

int run_layer(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
              const Style& style) {
  const std::optional<Layer> l = b.find(o.layer);
  if (!l) {
    no_such_layer(err, o, b);
    return kExitFailure;
  }
  if (o.json) {
    ordered_json j = document("layer");
    j.update(layer_json(*l, b.segment_offset(), true));
    print_json(out, j);
  } else {
    print_layer(out, b, *l, style);
  }
  return kExitOk;
}

}  // namespace mpsb::dump::detail
