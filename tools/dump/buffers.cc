// --buffers MAX: the windows of the data segment that Metal no-copy buffers
// of at most MAX bytes would wrap (mpsb::BufferPlan, mpsb/buffers.h), and
// which tensors each holds.
#include "mpsb/buffers.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "dump_internal.h"
#include "mpsb_text.h"

namespace mpsb::dump::detail {
namespace {

struct Placed {
  Layer layer;
  size_t tensor;
  TensorPlacement at;
};

// Every tensor by window, and in segment order within one.
std::vector<std::vector<Placed>> by_window(const Bundle& b, const BufferPlan& plan) {
  std::vector<std::vector<Placed>> w(plan.windows().size());
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      const TensorPlacement p = plan.placement(i, j);
      w[p.window].push_back({l, j, p});
    }
  }
  for (auto& list : w) {
    std::sort(list.begin(), list.end(),
              [](const Placed& x, const Placed& y) { return x.at.offset < y.at.offset; });
  }
  return w;
}

ordered_json plan_json(const Options& o, const Bundle& b, const BufferPlan& plan) {
  ordered_json j = document("buffers");
  j["file"] = o.bundle_path;
  j["max_buffer_length"] = o.buffer_limit;
  j["usable_length"] = plan.usable_length();
  j["page_size"] = plan.page_size();
  j["segment_offset"] = b.segment_offset();
  j["segment_size"] = b.segment().size();
  ordered_json windows = ordered_json::array();
  const auto placed = by_window(b, plan);
  for (size_t k = 0; k < plan.windows().size(); ++k) {
    const BufferWindow& w = plan.windows()[k];
    ordered_json wj;
    wj["index"] = k;
    wj["offset"] = w.offset;
    wj["file_offset"] = b.segment_offset() + w.offset;
    wj["length"] = w.length;
    ordered_json tensors = ordered_json::array();
    for (const Placed& p : placed[k]) {
      const Tensor t = p.layer.tensor(p.tensor);
      ordered_json tj;
      tj["layer"] = p.layer.name();
      tj["tensor"] = p.tensor;
      tj["role"] = to_string(t.role());
      tj["offset"] = p.at.offset;
      tj["size"] = t.size();
      tensors.push_back(std::move(tj));
    }
    wj["tensors"] = std::move(tensors);
    windows.push_back(std::move(wj));
  }
  j["windows"] = std::move(windows);
  return j;
}

void print_plan(std::ostream& out, const Options& o, const Bundle& b, const BufferPlan& plan,
                const Style& style) {
  Fields f;
  f.add("file", printable(o.bundle_path));
  f.add("buffer limit", fmt::format("{} ({}), {} in whole pages", o.buffer_limit,
                                    text::human_bytes(o.buffer_limit), plan.usable_length()));
  f.add("page size", fmt::format("{}", plan.page_size()));
  f.add("segment", fmt::format("offset {}, size {} ({})", b.segment_offset(), b.segment().size(),
                               text::human_bytes(b.segment().size())));
  f.add("windows", fmt::format("{}", plan.windows().size()));
  f.print(out);
  out << '\n';
  // The window's columns only on its first tensor's row.
  std::vector<std::vector<std::string>> rows;
  const auto placed = by_window(b, plan);
  for (size_t k = 0; k < plan.windows().size(); ++k) {
    const BufferWindow& w = plan.windows()[k];
    for (size_t n = 0; n < placed[k].size(); ++n) {
      const Placed& p = placed[k][n];
      const Tensor t = p.layer.tensor(p.tensor);
      const bool first = n == 0;
      rows.push_back({first ? fmt::format("{}", k) : "", first ? fmt::format("{}", w.offset) : "",
                      first ? fmt::format("{}", w.length) : "",
                      truncate_to_width(printable(p.layer.name()), kMaxNameWidth),
                      std::string(to_string(t.role())), fmt::format("{}", p.at.offset),
                      fmt::format("{}", t.size())});
    }
  }
  print_table(out,
              {{"window", true},
               {"offset", true},
               {"length", true},
               {"layer"},
               {"role"},
               {"at", true},
               {"bytes", true}},
              rows, style);
}

}  // namespace

int run_buffers(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
                const Style& style) {
  Result<BufferPlan> plan = BufferPlan::make(b, o.buffer_limit, o.page_size);
  if (!plan.ok()) {
    err << "mpsb-dump: " << printable(plan.message()) << '\n';
    return plan.error() == Error::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  if (o.json) {
    print_json(out, plan_json(o, b, *plan));
  } else {
    print_plan(out, o, b, *plan, style);
  }
  return kExitOk;
}

}  // namespace mpsb::dump::detail
