// What a layer's kind shows in the table, --layer and --json: one switch
// over the kind's parameter table (kind_spec(kind).params, mpsb/kinds.h),
// so a kind added to the table is shown with the parameters of its table,
// and a new ParamTable fails the build here (-Werror=switch).
#include <fmt/format.h>

#include <algorithm>

#include "dump_internal.h"
#include "mpsb/kinds.h"

namespace mpsb::dump::detail {
namespace {

// A PyTorch pair as the manifest writes it: "3" when square, else "3,5".
std::string pair_text(uint32_t h, uint32_t w) {
  return h == w ? fmt::format("{}", h) : fmt::format("{},{}", h, w);
}

std::string pair_list(uint32_t h, uint32_t w) { return fmt::format("[{}, {}]", h, w); }

// Whether the kind takes a manifest field that goes to `slot`.
bool takes(LayerKind k, Slot slot) {
  const auto& fields = kind_spec(k).fields;
  return std::any_of(fields.begin(), fields.end(),
                     [&](const FieldSpec& f) { return f.slot == slot; });
}

// The manifest name of the kind's field that goes to `slot`.
std::string field_name(LayerKind k, Slot slot, std::string_view fallback) {
  for (const FieldSpec& f : kind_spec(k).fields) {
    if (f.slot == slot) return std::string(f.name);
  }
  return std::string(fallback);
}

// nn.PReLU's num_parameters: the weight's source length (1 or C).
uint64_t prelu_slopes(const Layer& l) {
  const std::optional<Tensor> w = l.find(TensorRole::kWeight);
  if (!w) return 0;
  uint64_t n = 1;
  for (const uint64_t d : w->source_shape()) n *= d;
  return n;
}

// The activation's parameters as {name, value}, in kinds.h's order.
std::vector<std::pair<std::string_view, float>> activation_params(const Layer& l) {
  const ActivationSpec& a = activation_spec(l.activation());
  std::vector<std::pair<std::string_view, float>> p;
  const float values[2] = {l.activation_alpha(), l.activation_beta()};
  for (size_t i = 0; i < 2; ++i) {
    if (!a.param_names[i].empty()) p.emplace_back(a.param_names[i], values[i]);
  }
  return p;
}

// A probe's feature channels in and out (the C of each stored [N][H][W][C]).
std::pair<uint64_t, uint64_t> probe_channels(const Layer& l) {
  const auto in = l.find(TensorRole::kProbeInput), out = l.find(TensorRole::kProbeOutput);
  // Bundle::open guarantees both, four dimensions each.
  return {in ? in->shape()[3] : 0, out ? out->shape()[3] : 0};
}

}  // namespace

std::string channels_text(const Layer& l) {
  switch (kind_spec(l.kind()).params) {
    case ParamTable::kConv: {
      const ConvParams c = l.conv();
      return fmt::format("{}->{}", c.in_channels, c.out_channels);
    }
    case ParamTable::kLinear: {
      const LinearParams p = l.linear();
      return fmt::format("{}->{}", p.in_features, p.out_features);
    }
    case ParamTable::kNorm:
    case ParamTable::kGroupNorm:
    case ParamTable::kChannels:
      return fmt::format("{}", l.norm().num_features);
    case ParamTable::kNone: {
      const auto [in, out] = probe_channels(l);
      return fmt::format("{}->{}", in, out);
    }
  }
  return "";
}

// "3x3 s2 p1 d1 g1": what a reader checks first against the PyTorch module.
std::string params_text(const Layer& l) {
  switch (kind_spec(l.kind()).params) {
    case ParamTable::kConv: {
      const ConvParams c = l.conv();
      std::string s = fmt::format(
          "{}x{} s{} p{} d{} g{}", c.kernel_h, c.kernel_w, pair_text(c.stride_h, c.stride_w),
          pair_text(c.padding_h, c.padding_w), pair_text(c.dilation_h, c.dilation_w), c.groups);
      if (takes(l.kind(), Slot::kOutputPadding)) {
        s += fmt::format(" op{}", pair_text(c.output_padding_h, c.output_padding_w));
      }
      if (l.legalized_groups() != 0) s += fmt::format(" (dense of g{})", l.legalized_groups());
      return s;
    }
    case ParamTable::kLinear: {
      const LinearParams p = l.linear();
      return p.flattened() ? fmt::format("flatten {}x{}x{}", p.input_c, p.input_h, p.input_w)
                           : std::string("vector");
    }
    case ParamTable::kNorm:
      return fmt::format("eps {:g}", l.norm().eps);
    case ParamTable::kGroupNorm: {
      const NormParams n = l.norm();
      return fmt::format("groups {} eps {:g}", n.num_groups, n.eps);
    }
    case ParamTable::kChannels: {
      const uint64_t n = prelu_slopes(l);
      return fmt::format("{} slope{}", n, n == 1 ? "" : "s");
    }
    case ParamTable::kNone: {
      const auto in = l.find(TensorRole::kProbeInput);
      return fmt::format("batch {}", in ? in->shape()[0] : 0);
    }
  }
  return "";
}

std::string activation_text(const Layer& l) {
  const auto params = activation_params(l);
  std::string s(activation_spec(l.activation()).name);
  if (params.empty()) return s;
  std::vector<std::string> values;
  for (const auto& [name, v] : params) values.push_back(fmt::format("{:g}", v));
  return fmt::format("{}({})", s, fmt::join(values, ", "));
}

void add_param_fields(Fields* f, const Layer& l) {
  const LayerKind k = l.kind();
  switch (kind_spec(k).params) {
    case ParamTable::kConv: {
      const ConvParams c = l.conv();
      f->add("in_channels", fmt::format("{}", c.in_channels));
      f->add("out_channels", fmt::format("{}", c.out_channels));
      f->add("kernel_size", pair_list(c.kernel_h, c.kernel_w));
      f->add("stride", pair_list(c.stride_h, c.stride_w));
      f->add("padding", pair_list(c.padding_h, c.padding_w));
      f->add("dilation", pair_list(c.dilation_h, c.dilation_w));
      f->add("groups", fmt::format("{}", c.groups));
      if (takes(k, Slot::kOutputPadding)) {
        f->add("output_padding", pair_list(c.output_padding_h, c.output_padding_w));
      }
      return;
    }
    case ParamTable::kLinear: {
      const LinearParams p = l.linear();
      f->add("in_features", fmt::format("{}", p.in_features));
      f->add("out_features", fmt::format("{}", p.out_features));
      f->add("input_shape", p.flattened()
                                ? fmt::format("[{}, {}, {}]", p.input_c, p.input_h, p.input_w)
                                : std::string("none (vector input)"));
      return;
    }
    case ParamTable::kNorm: {
      const NormParams n = l.norm();
      f->add("num_features", fmt::format("{}", n.num_features));
      f->add("eps", fmt::format("{:g}", n.eps));
      return;
    }
    case ParamTable::kGroupNorm: {
      const NormParams n = l.norm();
      f->add("num_groups", fmt::format("{}", n.num_groups));
      f->add(field_name(k, Slot::kNumFeatures, "num_channels"), fmt::format("{}", n.num_features));
      f->add("eps", fmt::format("{:g}", n.eps));
      return;
    }
    case ParamTable::kChannels: {
      const uint64_t n = prelu_slopes(l);
      f->add("num_parameters",
             fmt::format("{}{}", n, n == 1 ? " (broadcast to every channel)" : ""));
      f->add(field_name(k, Slot::kNumFeatures, "num_channels"),
             fmt::format("{}", l.norm().num_features));
      return;
    }
    case ParamTable::kNone:  // a probe: its tensors' shapes say it all
      return;
  }
}

void add_activation_fields(Fields* f, const Layer& l) {
  const ActivationSpec& a = activation_spec(l.activation());
  const auto params = activation_params(l);
  if (params.empty()) {
    f->add("activation", std::string(a.name));
    return;
  }
  std::vector<std::string> parts;
  for (const auto& [name, v] : params) parts.push_back(fmt::format("{} {:g}", name, v));
  f->add("activation", fmt::format("{} ({})", a.name, fmt::join(parts, ", ")));
}

bool holds_folded_values(const Layer& l, const Tensor& t) {
  return !l.folded_batchnorm().empty() &&
         (t.role() == TensorRole::kWeight || t.role() == TensorRole::kBias);
}

ordered_json params_json(const Layer& l) {
  ordered_json j = ordered_json::object();
  const LayerKind k = l.kind();
  switch (kind_spec(k).params) {
    case ParamTable::kConv: {
      const ConvParams c = l.conv();
      j["in_channels"] = c.in_channels;
      j["out_channels"] = c.out_channels;
      j["kernel_size"] = {c.kernel_h, c.kernel_w};
      j["stride"] = {c.stride_h, c.stride_w};
      j["padding"] = {c.padding_h, c.padding_w};
      j["dilation"] = {c.dilation_h, c.dilation_w};
      j["groups"] = c.groups;
      if (takes(k, Slot::kOutputPadding)) {
        j["output_padding"] = {c.output_padding_h, c.output_padding_w};
      }
      break;
    }
    case ParamTable::kLinear: {
      const LinearParams p = l.linear();
      j["in_features"] = p.in_features;
      j["out_features"] = p.out_features;
      j["input_shape"] =
          p.flattened() ? ordered_json({p.input_c, p.input_h, p.input_w}) : ordered_json(nullptr);
      break;
    }
    case ParamTable::kNorm: {
      const NormParams n = l.norm();
      j["num_features"] = n.num_features;
      j["eps"] = n.eps;
      break;
    }
    case ParamTable::kGroupNorm: {
      const NormParams n = l.norm();
      j["num_groups"] = n.num_groups;
      j[field_name(k, Slot::kNumFeatures, "num_channels")] = n.num_features;
      j["eps"] = n.eps;
      break;
    }
    case ParamTable::kChannels:
      j["num_parameters"] = prelu_slopes(l);
      j[field_name(k, Slot::kNumFeatures, "num_channels")] = l.norm().num_features;
      break;
    case ParamTable::kNone:  // a probe: its tensors' shapes say it all
      break;
  }
  return j;
}

ordered_json activation_params_json(const Layer& l) {
  ordered_json j = ordered_json::object();
  for (const auto& [name, v] : activation_params(l)) j[std::string(name)] = v;
  return j;
}

ordered_json activation_alpha_json(const Layer& l) {
  const auto params = activation_params(l);
  return params.empty() ? ordered_json(nullptr) : ordered_json(params[0].second);
}

}  // namespace mpsb::dump::detail
