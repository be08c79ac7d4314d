#include "mpsbc/reference.h"

#include <fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>

#include "checked_math.h"
#include "conv_bounds.h"
#include "mpsb_text.h"

namespace mpsbc {
namespace {

using mpsb::DType;
using mpsb::Error;
using mpsb::Layer;
using mpsb::LayerKind;
using mpsb::Result;
using mpsb::TensorRole;

Result<std::vector<float>> decode_weights_unguarded(const Layer& layer);

Result<FeatureMap> fail(const Layer& layer, const std::string& what) {
  return {Error::kInvalidArgument, "layer '" + std::string(layer.name()) + "': " + what};
}

std::vector<float> decode(const mpsb::Tensor& t) {
  const uint64_t n = t.element_count();
  std::vector<float> out(n);
  const auto* p = static_cast<const uint8_t*>(t.data());
  switch (t.dtype()) {
    case DType::kFloat32:
      std::memcpy(out.data(), p, n * 4);
      break;
    case DType::kFloat16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = fp16_ieee_to_fp32_value(h);
      }
      break;
    case DType::kBFloat16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = mpsb::text::bfloat16_to_float(h);
      }
      break;
    case DType::kUInt8:
      for (uint64_t i = 0; i < n; ++i) out[i] = p[i];
      break;
  }
  return out;
}

std::vector<float> vector_or(const Layer& layer, TensorRole role, uint64_t n, float fill) {
  if (auto t = layer.find(role)) return decode(*t);
  return std::vector<float>(n, fill);
}

// Elements of `shape`, or 0 when the product overflows (no real tensor has
// zero elements: every caller refuses 0).
uint64_t product(const std::vector<uint64_t>& shape) { return checked_product(shape).value_or(0); }

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s;
  for (uint64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
  return "[" + s + "]";
}

// A vector the bundle stores for `role` must hold `n` values: the runtime
// checks the shapes it serves, but the reference indexes them itself.
Result<std::vector<float>> vector_of(const Layer& layer, TensorRole role, uint64_t n, float fill) {
  std::vector<float> v = vector_or(layer, role, n, fill);
  if (v.size() != n) {
    return {Error::kBadField,
            "layer '" + std::string(layer.name()) + "': its " + std::string(mpsb::to_string(role)) +
                " holds " + std::to_string(v.size()) + " values, expected " + std::to_string(n)};
  }
  return v;
}

// NCHW -> NHWC and back.
std::vector<float> to_nhwc(const FeatureMap& m) {
  const uint64_t n = m.shape[0], c = m.shape[1], h = m.shape[2], w = m.shape[3];
  std::vector<float> out(m.data.size());
  for (uint64_t b = 0; b < n; ++b)
    for (uint64_t ch = 0; ch < c; ++ch)
      for (uint64_t y = 0; y < h; ++y)
        for (uint64_t x = 0; x < w; ++x)
          out[((b * h + y) * w + x) * c + ch] = m.data[((b * c + ch) * h + y) * w + x];
  return out;
}

FeatureMap from_nhwc(const std::vector<float>& v, uint64_t n, uint64_t h, uint64_t w, uint64_t c) {
  FeatureMap m{{n, c, h, w}, std::vector<float>(v.size())};
  for (uint64_t b = 0; b < n; ++b)
    for (uint64_t ch = 0; ch < c; ++ch)
      for (uint64_t y = 0; y < h; ++y)
        for (uint64_t x = 0; x < w; ++x)
          m.data[((b * c + ch) * h + y) * w + x] = v[((b * h + y) * w + x) * c + ch];
  return m;
}

// Ordinary convolution on NHWC with an OHWI kernel. `in_y(oy, ky)` maps an
// output row and kernel row to an input row, or -1 for a zero (padding or,
// for transposed convs, an inserted zero); likewise `in_x`.
template <typename MapY, typename MapX>
std::vector<float> conv_nhwc(const std::vector<float>& in, uint64_t n, uint64_t h, uint64_t w,
                             uint64_t cin, const std::vector<float>& wt,
                             const std::vector<float>& bias, uint64_t cout, uint64_t kh,
                             uint64_t kw, uint64_t groups, uint64_t oh, uint64_t ow, MapY in_y,
                             MapX in_x) {
  const uint64_t ig = cin / groups, og = cout / groups;
  std::vector<float> out(n * oh * ow * cout);
  std::vector<double> acc(cout);
  for (uint64_t b = 0; b < n; ++b) {
    for (uint64_t oy = 0; oy < oh; ++oy) {
      for (uint64_t ox = 0; ox < ow; ++ox) {
        for (uint64_t o = 0; o < cout; ++o) acc[o] = bias.empty() ? 0.0 : bias[o];
        for (uint64_t ky = 0; ky < kh; ++ky) {
          const int64_t y = in_y(oy, ky);
          if (y < 0 || uint64_t(y) >= h) continue;
          for (uint64_t kx = 0; kx < kw; ++kx) {
            const int64_t x = in_x(ox, kx);
            if (x < 0 || uint64_t(x) >= w) continue;
            const float* px = &in[((b * h + uint64_t(y)) * w + uint64_t(x)) * cin];
            for (uint64_t o = 0; o < cout; ++o) {
              const uint64_t g = o / og;
              const float* pw = &wt[((o * kh + ky) * kw + kx) * ig];
              const float* pi = px + g * ig;
              double s = 0;
              for (uint64_t i = 0; i < ig; ++i) s += double(pi[i]) * double(pw[i]);
              acc[o] += s;
            }
          }
        }
        float* po = &out[((b * oh + oy) * ow + ox) * cout];
        for (uint64_t o = 0; o < cout; ++o) po[o] = float(acc[o]);
      }
    }
  }
  return out;
}

Result<FeatureMap> run_conv(const Layer& layer, const FeatureMap& input, bool transposed) {
  const mpsb::ConvParams p = layer.conv();
  auto shape = reference_output_shape(layer, input.shape);
  if (!shape.ok()) return {shape.error(), shape.message()};
  auto wt = decode_weights_unguarded(layer);
  if (!wt.ok()) return {wt.error(), wt.message()};
  const uint64_t ig = p.in_channels / p.groups;
  const std::vector<uint64_t> kernel = {p.out_channels, p.kernel_h, p.kernel_w, ig};
  if (wt->size() != product(kernel)) {
    return fail(layer, "its weight holds " + std::to_string(wt->size()) + " values, expected " +
                           std::to_string(product(kernel)));
  }
  std::vector<float> bias;
  if (layer.find(TensorRole::kBias)) {
    auto b = vector_of(layer, TensorRole::kBias, p.out_channels, 0.0f);
    if (!b.ok()) return {b.error(), b.message()};
    bias = std::move(*b);
  }
  const uint64_t n = input.shape[0], h = input.shape[2], w = input.shape[3];
  const uint64_t oh = (*shape)[2], ow = (*shape)[3];
  const auto nhwc = to_nhwc(input);
  // conv_bounds_error() passed: dilation <= 65535 and padding <=
  // dilation·(kernel − 1), so every coordinate below stays within ±2^63.
  const int64_t sh = p.stride_h, sw = p.stride_w, dh = p.dilation_h, dw = p.dilation_w;
  const int64_t kh = p.kernel_h, kw = p.kernel_w;
  if (!transposed) {
    const int64_t ph = p.padding_h, pw = p.padding_w;
    auto out = conv_nhwc(
        nhwc, n, h, w, p.in_channels, *wt, bias, p.out_channels, uint64_t(kh), uint64_t(kw),
        p.groups, oh, ow,
        [&](uint64_t oy, uint64_t ky) { return int64_t(oy) * sh - ph + int64_t(ky) * dh; },
        [&](uint64_t ox, uint64_t kx) { return int64_t(ox) * sw - pw + int64_t(kx) * dw; });
    return from_nhwc(out, n, oh, ow, p.out_channels);
  }
  // Transposed: insert stride-1 zeros between input pixels, pad by
  // dilation*(k-1)-padding (plus output_padding at the far end), then an
  // ordinary stride-1 convolution with the stored, already rotated kernel.
  const int64_t lead_h = dh * (kh - 1) - p.padding_h, lead_w = dw * (kw - 1) - p.padding_w;
  auto up = [](int64_t u, int64_t stride) -> int64_t {
    if (u < 0 || u % stride != 0) return -1;
    return u / stride;
  };
  auto out = conv_nhwc(
      nhwc, n, h, w, p.in_channels, *wt, bias, p.out_channels, uint64_t(kh), uint64_t(kw), p.groups,
      oh, ow,
      [&](uint64_t oy, uint64_t ky) { return up(int64_t(oy) - lead_h + int64_t(ky) * dh, sh); },
      [&](uint64_t ox, uint64_t kx) { return up(int64_t(ox) - lead_w + int64_t(kx) * dw, sw); });
  return from_nhwc(out, n, oh, ow, p.out_channels);
}

Result<FeatureMap> run_linear(const Layer& layer, const FeatureMap& input) {
  const mpsb::LinearParams p = layer.linear();
  auto shape = reference_output_shape(layer, input.shape);
  if (!shape.ok()) return {shape.error(), shape.message()};
  auto wt = decode_weights_unguarded(layer);
  if (!wt.ok()) return {wt.error(), wt.message()};
  const uint64_t n = input.shape[0], f = p.in_features;
  if (wt->size() != product({p.out_features, f})) {
    return fail(layer, "its weight holds " + std::to_string(wt->size()) + " values, expected " +
                           std::to_string(product({p.out_features, f})));
  }
  if (p.flattened() && product({p.input_c, p.input_h, p.input_w}) != f) {
    return fail(layer, "its flattened input [" + std::to_string(p.input_c) + ", " +
                           std::to_string(p.input_h) + ", " + std::to_string(p.input_w) +
                           "] does not hold " + std::to_string(f) + " features");
  }
  auto bias = vector_of(layer, TensorRole::kBias, p.out_features, 0.0f);
  if (!bias.ok()) return {bias.error(), bias.message()};
  FeatureMap out{{n, p.out_features}, std::vector<float>(n * p.out_features)};
  std::vector<float> x(f);
  for (uint64_t b = 0; b < n; ++b) {
    const float* src = &input.data[b * f];
    if (p.flattened()) {
      // MPS feature maps are HWC: feed the flattened CHW map in that order.
      const uint64_t c = p.input_c, h = p.input_h, w = p.input_w;
      for (uint64_t ch = 0; ch < c; ++ch)
        for (uint64_t y = 0; y < h; ++y)
          for (uint64_t xx = 0; xx < w; ++xx) x[(y * w + xx) * c + ch] = src[(ch * h + y) * w + xx];
    } else {
      std::copy(src, src + f, x.begin());
    }
    for (uint64_t o = 0; o < p.out_features; ++o) {
      const float* pw = &(*wt)[o * f];
      double s = (*bias)[o];
      for (uint64_t i = 0; i < f; ++i) s += double(x[i]) * double(pw[i]);
      out.data[b * p.out_features + o] = float(s);
    }
  }
  return out;
}

Result<FeatureMap> run_norm(const Layer& layer, const FeatureMap& input, bool instance) {
  const mpsb::NormParams p = layer.norm();
  auto shape = reference_output_shape(layer, input.shape);
  if (!shape.ok()) return {shape.error(), shape.message()};
  // run_reference() checked that the shape's product is the data's size.
  const uint64_t n = input.shape[0], c = p.num_features, hw = input.shape[2] * input.shape[3];
  auto gamma_r = vector_of(layer, TensorRole::kWeight, c, 1.0f);
  auto beta_r = vector_of(layer, TensorRole::kBias, c, 0.0f);
  auto mean_r = vector_of(layer, TensorRole::kRunningMean, c, 0.0f);
  auto var_r = vector_of(layer, TensorRole::kRunningVar, c, 1.0f);
  for (const auto* r : {&gamma_r, &beta_r, &mean_r, &var_r}) {
    if (!r->ok()) return {r->error(), r->message()};
  }
  const std::vector<float>&gamma = *gamma_r, &beta = *beta_r, &mean = *mean_r, &var = *var_r;
  FeatureMap out{input.shape, std::vector<float>(input.data.size())};
  for (uint64_t b = 0; b < n; ++b) {
    for (uint64_t ch = 0; ch < c; ++ch) {
      const float* src = &input.data[(b * c + ch) * hw];
      double mu = mean[ch], sigma2 = var[ch];
      if (instance) {
        // Biased variance over the instance's own H x W, as both PyTorch
        // and MPS compute it.
        double s = 0, s2 = 0;
        for (uint64_t i = 0; i < hw; ++i) s += src[i];
        mu = s / double(hw);
        for (uint64_t i = 0; i < hw; ++i) s2 += (src[i] - mu) * (src[i] - mu);
        sigma2 = s2 / double(hw);
      }
      const double scale = gamma[ch] / std::sqrt(sigma2 + double(p.eps));
      float* dst = &out.data[(b * c + ch) * hw];
      for (uint64_t i = 0; i < hw; ++i) dst[i] = float((src[i] - mu) * scale + beta[ch]);
    }
  }
  return out;
}

// nn.GroupNorm: mean and biased variance over each group's C/G channels
// and all H x W, then the per-channel affine.
Result<FeatureMap> run_group_norm(const Layer& layer, const FeatureMap& input) {
  const mpsb::NormParams p = layer.norm();
  auto shape = reference_output_shape(layer, input.shape);
  if (!shape.ok()) return {shape.error(), shape.message()};
  const uint64_t n = input.shape[0], c = p.num_features, hw = input.shape[2] * input.shape[3];
  const uint64_t per = c / p.num_groups;
  auto gamma_r = vector_of(layer, TensorRole::kWeight, c, 1.0f);
  auto beta_r = vector_of(layer, TensorRole::kBias, c, 0.0f);
  if (!gamma_r.ok()) return {gamma_r.error(), gamma_r.message()};
  if (!beta_r.ok()) return {beta_r.error(), beta_r.message()};
  const std::vector<float>&gamma = *gamma_r, &beta = *beta_r;
  FeatureMap out{input.shape, std::vector<float>(input.data.size())};
  for (uint64_t b = 0; b < n; ++b) {
    for (uint64_t g = 0; g < p.num_groups; ++g) {
      const float* src = &input.data[(b * c + g * per) * hw];
      const uint64_t count = per * hw;
      double s = 0, s2 = 0;
      for (uint64_t i = 0; i < count; ++i) s += src[i];
      const double mu = s / double(count);
      for (uint64_t i = 0; i < count; ++i) s2 += (src[i] - mu) * (src[i] - mu);
      const double inv = 1.0 / std::sqrt(s2 / double(count) + double(p.eps));
      for (uint64_t k = 0; k < per; ++k) {
        const uint64_t ch = g * per + k;
        const float* x = src + k * hw;
        float* dst = &out.data[(b * c + ch) * hw];
        for (uint64_t i = 0; i < hw; ++i) dst[i] = float((x[i] - mu) * inv * gamma[ch] + beta[ch]);
      }
    }
  }
  return out;
}

// x >= 0 ? x : a[c] * x, with c the channel of each element: dimension 1 of
// [N, C, H, W] or [N, C].
void prelu(const std::vector<float>& a, FeatureMap* map) {
  const auto& shape = map->shape;
  const uint64_t c = shape.size() > 1 ? shape[1] : 1;
  uint64_t inner = 1;
  for (size_t i = 2; i < shape.size(); ++i) inner *= shape[i];
  if (a.size() < c) return;  // the checker guarantees one slope per channel
  for (uint64_t i = 0; i < map->data.size(); ++i) {
    float& x = map->data[i];
    if (x < 0) x *= a[(i / inner) % c];
  }
}

Result<FeatureMap> run_prelu(const Layer& layer, const FeatureMap& input) {
  const uint64_t c = layer.norm().num_features;
  auto shape = reference_output_shape(layer, input.shape);
  if (!shape.ok()) return {shape.error(), shape.message()};
  FeatureMap out = input;
  prelu(vector_or(layer, TensorRole::kWeight, c, 0.0f), &out);
  return out;
}

Result<std::vector<float>> decode_weights_unguarded(const Layer& layer) {
  const auto w = layer.find(TensorRole::kWeight);
  if (!w) return {Error::kNotFound, "layer '" + std::string(layer.name()) + "' has no weight"};
  std::vector<float> v = decode(*w);
  switch (layer.quantization()) {
    case mpsb::Quantization::kNone:
      break;
    case mpsb::Quantization::kLinear: {
      // rangesForUInt8Kernel: w = q / 255 * (max - min) + min per output channel.
      const auto r = layer.find(TensorRole::kQuantRanges);
      if (!r) return {Error::kBadField, "uint8-linear layer without ranges"};
      const auto ranges = decode(*r);
      const uint64_t out = w->shape()[0], per = v.size() / out;
      if (ranges.size() != 2 * out) {
        return {Error::kBadField, "layer '" + std::string(layer.name()) +
                                      "': " + std::to_string(ranges.size() / 2) + " ranges for " +
                                      std::to_string(out) + " output channels"};
      }
      for (uint64_t o = 0; o < out; ++o) {
        const double lo = ranges[2 * o], hi = ranges[2 * o + 1];
        for (uint64_t i = 0; i < per; ++i) {
          v[o * per + i] = float(v[o * per + i] / 255.0 * (hi - lo) + lo);
        }
      }
      break;
    }
    case mpsb::Quantization::kLookupTable: {
      const auto t = layer.find(TensorRole::kQuantLookupTable);
      if (!t) return {Error::kBadField, "uint8-lut layer without a lookup table"};
      const auto table = decode(*t);
      if (table.size() != 256) {
        return {Error::kBadField, "layer '" + std::string(layer.name()) + "': a lookup table of " +
                                      std::to_string(table.size()) + " entries, expected 256"};
      }
      for (float& x : v) x = table[size_t(x)];
      break;
    }
  }
  return v;
}

Result<FeatureMap> run_reference_unguarded(const Layer& layer, const FeatureMap& input) {
  if (input.shape.empty() || product(input.shape) == 0 ||
      product(input.shape) != input.data.size()) {
    return fail(layer, "probe input shape does not match its data");
  }
  switch (layer.kind()) {
    case LayerKind::kConv2d:
      return run_conv(layer, input, false);
    case LayerKind::kConvTranspose2d:
      return run_conv(layer, input, true);
    case LayerKind::kLinear:
      return run_linear(layer, input);
    case LayerKind::kBatchNorm2d:
      return run_norm(layer, input, false);
    case LayerKind::kInstanceNorm2d:
      return run_norm(layer, input, true);
    case LayerKind::kGroupNorm:
      return run_group_norm(layer, input);
    case LayerKind::kPReLU:
      return run_prelu(layer, input);
    case LayerKind::kProbe:
      break;  // reference_output_shape refuses it first
  }
  return fail(layer, "unknown layer kind");
}

// A vector the size of a probe or a weight that does not fit in memory is
// an error naming the layer, not an exception out of --check.
Result<std::vector<float>> guarded_decode(const Layer& layer) {
  try {
    return decode_weights_unguarded(layer);
  } catch (const std::bad_alloc&) {
  } catch (const std::length_error&) {
  }
  return {Error::kInvalidArgument,
          "layer '" + std::string(layer.name()) + "': out of memory decoding its weight"};
}

}  // namespace

Result<std::vector<uint64_t>> reference_output_shape(const Layer& layer,
                                                     const std::vector<uint64_t>& input_shape) {
  auto failure = [&](const std::string& what) -> Result<std::vector<uint64_t>> {
    return {Error::kInvalidArgument, "layer '" + std::string(layer.name()) + "': " + what};
  };
  std::vector<uint64_t> out;
  switch (layer.kind()) {
    case LayerKind::kConv2d:
    case LayerKind::kConvTranspose2d: {
      const bool transposed = layer.kind() == LayerKind::kConvTranspose2d;
      const mpsb::ConvParams p = layer.conv();
      if (input_shape.size() != 4 || input_shape[1] != p.in_channels) {
        return failure("probe input " + shape_text(input_shape) + " is not [N, " +
                       std::to_string(p.in_channels) + ", H, W]");
      }
      if (p.groups == 0 || p.in_channels % p.groups != 0 || p.out_channels % p.groups != 0 ||
          p.kernel_h == 0 || p.kernel_w == 0 || p.stride_h == 0 || p.stride_w == 0) {
        return failure("groups, kernel_size or stride out of range");
      }
      if (const std::string e = conv_bounds_error(p); !e.empty()) return failure(e);
      const auto oh = conv_output_extent(input_shape[2], p.kernel_h, p.stride_h, p.padding_h,
                                         p.dilation_h, p.output_padding_h, transposed);
      const auto ow = conv_output_extent(input_shape[3], p.kernel_w, p.stride_w, p.padding_w,
                                         p.dilation_w, p.output_padding_w, transposed);
      if (!oh || !ow) {
        return failure("probe input " + shape_text(input_shape) +
                       " gives an empty or unrepresentable output");
      }
      out = {input_shape[0], p.out_channels, *oh, *ow};
      break;
    }
    case LayerKind::kLinear: {
      const mpsb::LinearParams p = layer.linear();
      const uint64_t total = product(input_shape);
      if (input_shape.empty() || total == 0 || p.in_features == 0 ||
          total / input_shape[0] != p.in_features || total % input_shape[0] != 0) {
        return failure("probe input " + shape_text(input_shape) + " does not hold " +
                       std::to_string(p.in_features) + " features per sample");
      }
      out = {input_shape[0], p.out_features};
      break;
    }
    case LayerKind::kBatchNorm2d:
    case LayerKind::kInstanceNorm2d:
    case LayerKind::kGroupNorm: {
      const mpsb::NormParams p = layer.norm();
      if (layer.kind() == LayerKind::kGroupNorm &&
          (p.num_groups == 0 || p.num_features % p.num_groups != 0)) {
        return failure("num_groups " + std::to_string(p.num_groups) + " does not divide " +
                       std::to_string(p.num_features) + " channels");
      }
      if (input_shape.size() != 4 || input_shape[1] != p.num_features) {
        return failure("probe input " + shape_text(input_shape) + " is not [N, " +
                       std::to_string(p.num_features) + ", H, W]");
      }
      out = input_shape;
      break;
    }
    case LayerKind::kPReLU: {
      const uint64_t c = layer.norm().num_features;
      if (input_shape.size() < 2 || input_shape[1] != c) {
        return failure("probe input " + shape_text(input_shape) + " does not have " +
                       std::to_string(c) + " channels");
      }
      out = input_shape;
      break;
    }
    case LayerKind::kProbe:
      return failure("a probe file's layer is check data, not a layer to run");
    default:
      return failure("unknown layer kind");
  }
  if (!checked_product(out)) {
    return failure("output " + shape_text(out) + " has more than 2^64 elements");
  }
  return out;
}

Result<std::vector<float>> decode_weights(const Layer& layer) { return guarded_decode(layer); }

Result<FeatureMap> run_reference(const Layer& layer, const FeatureMap& input) {
  try {
    return run_reference_unguarded(layer, input);
  } catch (const std::bad_alloc&) {
  } catch (const std::length_error&) {
  }
  return fail(layer, "out of memory for the CPU reference");
}

void apply_activation(const Layer& layer, FeatureMap* map) {
  const float a = layer.activation_alpha();
  const float b = layer.activation_beta();
  if (layer.activation() == mpsb::Activation::kPReLU) {
    const uint64_t c = map->shape.size() > 1 ? map->shape[1] : 1;
    prelu(vector_or(layer, TensorRole::kActivationWeight, c, 0.0f), map);
    return;
  }
  for (float& x : map->data) {
    switch (layer.activation()) {
      case mpsb::Activation::kNone:
        break;
      case mpsb::Activation::kReLU:
        x = std::max(x, 0.0f);
        break;
      case mpsb::Activation::kReLU6:
        x = std::clamp(x, 0.0f, 6.0f);
        break;
      case mpsb::Activation::kLeakyReLU:
        x = x >= 0 ? x : a * x;
        break;
      case mpsb::Activation::kSigmoid:
        x = 1.0f / (1.0f + std::exp(-x));
        break;
      case mpsb::Activation::kTanh:
        x = std::tanh(x);
        break;
      case mpsb::Activation::kELU:
        x = x >= 0 ? x : float(double(a) * std::expm1(double(x)));
        break;
      case mpsb::Activation::kHardSigmoid:
        x = std::clamp(float(double(x) / 6.0 + 0.5), 0.0f, 1.0f);
        break;
      case mpsb::Activation::kSoftplus:
        // PyTorch's form: linear once beta * x passes the threshold.
        x = double(a) * x > double(b) ? x : float(std::log1p(std::exp(double(a) * x)) / a);
        break;
      case mpsb::Activation::kGELU:
        x = float(0.5 * x * (1.0 + std::erf(double(x) / std::sqrt(2.0))));
        break;
      case mpsb::Activation::kPReLU:
        break;  // above: it needs the channel of each element
    }
  }
}

Comparison compare(const FeatureMap& got, const FeatureMap& want) {
  Comparison c;
  if (got.shape != want.shape || got.data.size() != want.data.size()) {
    c.mismatched_shape = 1;
    c.max_abs_error = c.max_rel_error = INFINITY;
    return c;
  }
  double peak = 0;
  for (size_t i = 0; i < got.data.size(); ++i) {
    const double d = std::fabs(double(got.data[i]) - double(want.data[i]));
    if (!(d <= c.max_abs_error)) c.max_abs_error = d;  // NaN propagates
    peak = std::max(peak, std::fabs(double(want.data[i])));
  }
  c.max_rel_error = c.max_abs_error / std::max(peak, 1e-12);
  return c;
}

}  // namespace mpsbc
