// The default mode: the bundle's header fields and the layer table (or the
// "bundle" JSON document).
#include <fmt/format.h>

#include <string_view>
#include <utility>
#include <vector>

#include "dump_internal.h"
#include "mpsb_text.h"

namespace mpsb::dump::detail {
namespace {

void print_summary(std::ostream& out, const std::string& path, const Bundle& b,
                   const Style& style) {
  Fields f;
  f.add("file", printable(path));
  f.add("name", printable(b.name()));
  f.add("format version", fmt::format("{}", b.format_version()));
  f.add("producer", printable(b.producer()));
  for (size_t i = 0; i < b.metadata_count(); ++i) {
    const auto [k, v] = b.metadata(i);
    f.add(i == 0 ? "metadata" : "", fmt::format("{} = {}", printable(k), printable(v)));
  }
  if (b.metadata_count() == 0) f.add("metadata", "(none)");
  if (b.skipped_module_count() != 0) {
    std::vector<std::pair<std::string_view, std::string_view>> modules;
    for (size_t i = 0; i < b.skipped_module_count(); ++i) {
      modules.emplace_back(b.skipped_module(i).name, b.skipped_module(i).type);
    }
    f.add("skipped", style.yellow(text::skipped_modules_text(modules)));
  }
  f.add("file size", fmt::format("{} ({})", b.file().size(), text::human_bytes(b.file().size())));
  f.add("metadata size",
        fmt::format("{}, checksum {}", b.metadata_bytes().size(), hex64(b.metadata_checksum())));
  f.add("layers", fmt::format("{}", b.layer_count()));
  f.add("tensors", fmt::format("{}", tensor_count(b)));
  f.add("tensor bytes",
        fmt::format("{} ({})", tensor_bytes(b), text::human_bytes(tensor_bytes(b))));
  f.add("alignment",
        fmt::format("segment {}, tensor {}", b.segment_alignment(), b.tensor_alignment()));
  f.add("segment", fmt::format("offset {}, size {}, checksum {}", b.segment_offset(),
                               b.segment().size(), hex64(b.segment_checksum())));
  std::vector<std::string> folds;
  for (const Layer& l : network_order(b)) {
    if (!l.folded_batchnorm().empty()) {
      folds.push_back(printable(l.folded_batchnorm()) + " into " + printable(l.name()));
    }
  }
  if (!folds.empty()) {
    f.add("folded", fmt::format("{} batch norm{}: {}", folds.size(), folds.size() == 1 ? "" : "s",
                                fmt::join(folds, ", ")));
  }
  f.print(out);
  out << '\n';

  std::vector<std::vector<std::string>> rows;
  for (const Layer& l : network_order(b)) {
    const std::optional<Tensor> w = l.find(TensorRole::kWeight);
    rows.push_back(
        {fmt::format("{}", l.index()), truncate_to_width(printable(l.name()), kMaxNameWidth),
         std::string(to_string(l.kind())), channels_text(l), params_text(l), activation_text(l),
         w ? shape_text(w->shape()) : "-", w ? std::string(to_string(w->layout())) : "-",
         w ? std::string(to_string(w->dtype())) : "-", fmt::format("{}", layer_bytes(l))});
  }
  print_table(out,
              {{"#", true},
               {"name"},
               {"kind"},
               {"channels"},
               {"params"},
               {"act"},
               {"weight"},
               {"layout"},
               {"dtype"},
               {"bytes", true}},
              rows, style);
}

}  // namespace

int run_summary(const Options& o, const Bundle& b, std::ostream& out, const Style& style) {
  if (o.json) {
    print_json(out, bundle_json(o.bundle_path, b, false));
  } else {
    print_summary(out, o.bundle_path, b, style);
  }
  return kExitOk;
}

}  // namespace mpsb::dump::detail
