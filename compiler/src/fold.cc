#include "fold.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "field_reader.h"
#include "mpsb/kinds.h"
#include "tensor_files.h"

namespace mpsbc {

using mpsb::DType;
using mpsb::LayerKind;
using mpsb::TensorRole;

bool fold_batchnorm(Manifest& manifest, Diagnostics& diag, const FoldFilter& only) {
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < manifest.layers.size(); ++i) by_name[manifest.layers[i].name] = i;
  std::vector<bool> folded(manifest.layers.size(), false);
  bool ok = true;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const ManifestLayer& bn = manifest.layers[i];
    if (bn.kind != LayerKind::kBatchNorm2d || bn.follows.empty()) continue;
    if (only && !only(bn)) continue;
    const std::string at = bn.pointer + "/follows";
    auto it = by_name.find(bn.follows);
    if (it == by_name.end()) {
      diag.error(at, "no layer named " + quote(bn.follows) + " to fold into");
      ok = false;
      continue;
    }
    ManifestLayer& conv = manifest.layers[it->second];
    if (mpsb::kind_spec(conv.kind).params != mpsb::ParamTable::kConv) {
      diag.error(at, quote(bn.follows) + " is a " + std::string(mpsb::to_string(conv.kind)) +
                         "; only conv2d and conv_transpose2d fold a batch norm");
      ok = false;
      continue;
    }
    if (it->second > i || !conv.folded_from.empty() || conv.activation != mpsb::Activation::kNone) {
      diag.error(at, quote(bn.follows) + (it->second > i ? " comes after this batch norm"
                                          : conv.folded_from.empty()
                                              ? " applies an activation before the batch norm"
                                              : " already folds " + quote(conv.folded_from)));
      ok = false;
      continue;
    }
    if (bn.norm.num_features != conv.conv.out_channels) {
      diag.error(at, "num_features " + std::to_string(bn.norm.num_features) + " differs from " +
                         quote(bn.follows) + "'s out_channels " +
                         std::to_string(conv.conv.out_channels));
      ok = false;
      continue;
    }
    // γ, β, μ, σ² (γ = 1 and β = 0 when the batch norm is not affine).
    const uint64_t n = bn.norm.num_features;
    std::vector<float> v[4] = {std::vector<float>(n, 1.0f), std::vector<float>(n, 0.0f),
                               std::vector<float>(n, 0.0f), std::vector<float>(n, 1.0f)};
    for (const ManifestTensor& t : bn.tensors) {
      if (t.role == TensorRole::kActivationWeight) continue;  // moves to the conv below
      std::string error;
      if (!read_tensor_floats(t, &v[static_cast<int>(t.role)], &error)) {
        diag.error(t.pointer, error);
        ok = false;
      }
    }
    if (!ok) continue;
    // Apple's formula (MPSCNNBatchNormalization): s = γ/√(σ²+ε),
    // W' = W·s, b' = (b − μ)·s + β = b·s + (β − μ·s).
    std::vector<float> scale(n), shift(n);
    for (uint64_t c = 0; c < n; ++c) {
      const double s = double(v[0][c]) / std::sqrt(double(v[3][c]) + double(bn.norm.eps));
      scale[c] = float(s);
      shift[c] = float(double(v[1][c]) - double(v[2][c]) * s);
    }
    ManifestTensor* conv_bias = nullptr;
    for (ManifestTensor& t : conv.tensors) {
      if (t.role == TensorRole::kWeight) t.fold_scale = scale;
      if (t.role == TensorRole::kBias) conv_bias = &t;
    }
    if (conv_bias) {
      conv_bias->fold_scale = scale;
      conv_bias->fold_shift = shift;
    } else {
      ManifestTensor bias;
      bias.role = TensorRole::kBias;
      bias.pointer = bn.pointer;
      bias.path_text = "(bias of the folded " + bn.name + ")";
      bias.plan = plan_vector(n);
      bias.source_size = bias.size = n * 4;
      bias.synthesized = shift;
      conv.tensors.push_back(std::move(bias));
    }
    // The activation after the batch norm now follows the folded conv,
    // which MPS fuses into the convolution; a prelu's slopes come along
    // (one per channel: num_features is the conv's out_channels).
    conv.activation = bn.activation;
    conv.activation_alpha = bn.activation_alpha;
    conv.activation_beta = bn.activation_beta;
    for (ManifestTensor& t : manifest.layers[i].tensors) {
      if (t.role == TensorRole::kActivationWeight) conv.tensors.push_back(std::move(t));
    }
    conv.folded_from = bn.name;
    conv.folded_probe = bn.probe;
    folded[i] = true;
  }
  if (!ok) return false;
  // Asked to fold and nothing to fold: say why, as a bundle that keeps its
  // batch norms runs them as separate MPS kernels.
  if (!only && std::find(folded.begin(), folded.end(), true) == folded.end()) {
    const bool any_bn =
        std::any_of(manifest.layers.begin(), manifest.layers.end(),
                    [](const ManifestLayer& l) { return l.kind == LayerKind::kBatchNorm2d; });
    diag.warning("", std::string("--fold-batchnorm folded nothing: ") +
                         (any_bn ? "no batch_norm2d names the conv it follows (\"follows\"); "
                                   "the exporter writes it only where a BatchNorm2d is fed "
                                   "directly by a conv"
                                 : "the manifest has no batch_norm2d"));
    return true;
  }
  std::vector<ManifestLayer> kept;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    if (folded[i]) continue;
    kept.push_back(std::move(manifest.layers[i]));
    kept.back().index = static_cast<uint32_t>(kept.size() - 1);
  }
  manifest.layers = std::move(kept);
  return true;
}

}  // namespace mpsbc
