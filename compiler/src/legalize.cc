#include "legalize.h"

#include <string>

#include "mpsbc/layout.h"

namespace mpsbc {

bool legalize_layers(Manifest& manifest, bool legalize, Diagnostics& diag) {
  bool ok = true;
  for (ManifestLayer& l : manifest.layers) {
    if (l.mps_refusal.empty()) continue;
    const std::string what = "layer '" + l.name + "': " + l.mps_refusal;
    if (!legalize) {
      diag.error(l.mps_refusal_pointer,
                 what +
                     "; MPS refuses it at kernel creation (--legalize stores it as the "
                     "equivalent dense convolution, groups 1)");
      ok = false;
      continue;
    }
    const bool transposed = l.kind == mpsb::LayerKind::kConvTranspose2d;
    if (l.kind != mpsb::LayerKind::kConv2d && !transposed) {
      diag.error(l.mps_refusal_pointer,
                 what +
                     "; MPS refuses it at kernel creation, and --legalize handles conv2d "
                     "and conv_transpose2d layers only");
      ok = false;
      continue;
    }
    auto& c = l.conv;
    for (ManifestTensor& t : l.tensors) {
      if (t.role != mpsb::TensorRole::kWeight) continue;
      t.plan = transposed ? plan_conv_transpose_weight_dense(c.in_channels, c.out_channels,
                                                             c.groups, c.kernel_h, c.kernel_w)
                          : plan_conv_weight_dense(c.out_channels, c.in_channels, c.groups,
                                                   c.kernel_h, c.kernel_w);
      t.size = t.plan.element_count() * mpsb::dtype_size(t.dtype);
    }
    l.legalized_groups = c.groups;
    c.groups = 1;
  }
  return ok;
}

LegalizeCost legalize_cost(const ManifestLayer& layer) {
  LegalizeCost cost;
  if (layer.legalized_groups == 0) return cost;
  for (const ManifestTensor& t : layer.tensors) {
    if (t.role != mpsb::TensorRole::kWeight) continue;
    const uint64_t zeros = t.plan.element_count() - t.plan.source_element_count();
    cost.extra_weight_bytes = zeros * mpsb::dtype_size(t.dtype);
    cost.extra_macs_per_position = zeros;
  }
  return cost;
}

}  // namespace mpsbc
