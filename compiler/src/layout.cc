#include "mpsbc/layout.h"

#include <algorithm>
#include <cstring>

#include "checked_math.h"

namespace mpsbc {
namespace {

// A stored tensor walked in order as a box of up to five dimensions; stored
// element (i0..i4) is source element base + sum(i_k * stride_k). Negative
// strides express the transposed conv's kernel rotation.
struct Walk {
  int rank = 0;
  uint64_t dims[5] = {};
  int64_t strides[5] = {};
  int64_t base = 0;
};

Walk make_walk(const TensorPlan& p) {
  Walk w;
  const auto& s = p.source_shape;
  switch (p.transform) {
    case Transform::kIdentity:
      w.rank = 1;
      w.dims[0] = p.element_count();
      w.strides[0] = 1;
      break;
    case Transform::kConvOIHWToOHWI: {
      const int64_t o = s[0], ig = s[1], kh = s[2], kw = s[3];
      w.rank = 4;
      const uint64_t dims[] = {uint64_t(o), uint64_t(kh), uint64_t(kw), uint64_t(ig)};
      const int64_t strides[] = {ig * kh * kw, kw, 1, kh * kw};
      std::memcpy(w.dims, dims, sizeof dims);
      std::memcpy(w.strides, strides, sizeof strides);
      break;
    }
    case Transform::kConvTransposeToOHWIRotated: {
      // source [g*Ig][Og][kH][kW] -> stored [g][Og][kH][kW][Ig], rotated.
      const int64_t og = s[1], kh = s[2], kw = s[3];
      const int64_t ig = int64_t(p.stored_shape[3]);
      const int64_t g = int64_t(s[0]) / ig;
      w.rank = 5;
      const uint64_t dims[] = {uint64_t(g), uint64_t(og), uint64_t(kh), uint64_t(kw), uint64_t(ig)};
      const int64_t strides[] = {ig * og * kh * kw, kh * kw, -kw, -1, og * kh * kw};
      std::memcpy(w.dims, dims, sizeof dims);
      std::memcpy(w.strides, strides, sizeof strides);
      w.base = (kh - 1) * kw + (kw - 1);
      break;
    }
    case Transform::kLinearFlattenToOHWC: {
      // stored [out][H][W][C]; source [out][C][H][W].
      const int64_t out = int64_t(p.stored_shape[0]), h = int64_t(p.stored_shape[1]),
                    wd = int64_t(p.stored_shape[2]), c = int64_t(p.stored_shape[3]);
      w.rank = 4;
      const uint64_t dims[] = {uint64_t(out), uint64_t(h), uint64_t(wd), uint64_t(c)};
      const int64_t strides[] = {c * h * wd, wd, 1, h * wd};
      std::memcpy(w.dims, dims, sizeof dims);
      std::memcpy(w.strides, strides, sizeof strides);
      break;
    }
  }
  return w;
}

// Visits stored elements in order, calling f(stored_index, source_index).
// The two innermost dimensions are plain loops; the rest an odometer.
template <typename F>
void walk(const Walk& w, F&& f) {
  for (int k = 0; k < w.rank; ++k) {
    if (w.dims[k] == 0) return;
  }
  if (w.rank == 1) {
    for (uint64_t i = 0; i < w.dims[0]; ++i) f(i, w.base + int64_t(i) * w.strides[0]);
    return;
  }
  const int outer = w.rank - 2;
  const uint64_t n1 = w.dims[outer], n0 = w.dims[outer + 1];
  const int64_t s1 = w.strides[outer], s0 = w.strides[outer + 1];
  uint64_t idx[5] = {};
  uint64_t out = 0;
  for (;;) {
    int64_t src = w.base;
    for (int k = 0; k < outer; ++k) src += int64_t(idx[k]) * w.strides[k];
    for (uint64_t a = 0; a < n1; ++a) {
      int64_t row = src + int64_t(a) * s1;
      for (uint64_t b = 0; b < n0; ++b) f(out++, row + int64_t(b) * s0);
    }
    int k = outer - 1;
    for (; k >= 0; --k) {
      if (++idx[k] < w.dims[k]) break;
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

template <typename T>
void gather(const Walk& w, const T* src, T* dst) {
  walk(w, [&](uint64_t d, int64_t s) { dst[d] = src[s]; });
}

template <typename T>
void scatter(const Walk& w, const T* stored, T* src) {
  walk(w, [&](uint64_t d, int64_t s) { src[s] = stored[d]; });
}

template <template <typename> class Op, typename... Args>
void by_size(size_t elem_size, const Walk& w, const void* in, void* out) {
  switch (elem_size) {
    case 1:
      Op<uint8_t>::run(w, static_cast<const uint8_t*>(in), static_cast<uint8_t*>(out));
      break;
    case 2:
      Op<uint16_t>::run(w, static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out));
      break;
    case 4:
      Op<uint32_t>::run(w, static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out));
      break;
    default:
      break;
  }
}

template <typename T>
struct GatherOp {
  static void run(const Walk& w, const T* in, T* out) { gather(w, in, out); }
};
template <typename T>
struct ScatterOp {
  static void run(const Walk& w, const T* in, T* out) { scatter(w, in, out); }
};

uint64_t product(std::span<const uint64_t> s) {
  uint64_t n = 1;
  for (uint64_t d : s) n *= d;
  return n;
}

bool fail(std::string* why, const char* text) {
  if (why) *why = text;
  return false;
}

bool equal(std::span<const uint64_t> a, std::initializer_list<uint64_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

uint64_t TensorPlan::element_count() const { return product(stored_shape); }

TensorPlan plan_conv_weight(uint64_t out, uint64_t in, uint64_t groups, uint64_t kh, uint64_t kw) {
  const uint64_t ig = in / groups;
  return {Transform::kConvOIHWToOHWI, TensorLayout::kOIHW, {out, ig, kh, kw}, TensorLayout::kOHWI,
          {out, kh, kw, ig}};
}

TensorPlan plan_conv_transpose_weight(uint64_t in, uint64_t out, uint64_t groups, uint64_t kh,
                                      uint64_t kw) {
  return {Transform::kConvTransposeToOHWIRotated,
          TensorLayout::kIOHW,
          {in, out / groups, kh, kw},
          TensorLayout::kOHWIRotated,
          {out, kh, kw, in / groups}};
}

TensorPlan plan_linear_weight(uint64_t out, uint64_t in, std::span<const uint64_t> input_chw) {
  if (input_chw.empty()) {
    return {Transform::kIdentity, TensorLayout::kOI, {out, in}, TensorLayout::kOHWI,
            {out, 1, 1, in}};
  }
  return {Transform::kLinearFlattenToOHWC, TensorLayout::kOI, {out, in}, TensorLayout::kOHWI,
          {out, input_chw[1], input_chw[2], input_chw[0]}};
}

TensorPlan plan_vector(uint64_t n) {
  return {Transform::kIdentity, TensorLayout::kVector, {n}, TensorLayout::kVector, {n}};
}

std::optional<TensorPlan> plan_from_stored(Transform transform, TensorLayout source_layout,
                                           std::span<const uint64_t> src,
                                           TensorLayout stored_layout,
                                           std::span<const uint64_t> dst, std::string* why) {
  TensorPlan p{transform, source_layout, {src.begin(), src.end()}, stored_layout,
               {dst.begin(), dst.end()}};
  for (uint64_t d : src) {
    if (d == 0) return fail(why, "zero dimension in source shape"), std::nullopt;
  }
  for (uint64_t d : dst) {
    if (d == 0) return fail(why, "zero dimension in stored shape"), std::nullopt;
  }
  // The shapes come from a file that may be corrupt: a product that wraps
  // would let a walk run past the tensor, so every product is checked.
  const auto src_count = checked_product(src);
  const auto dst_count = checked_product(dst);
  if (!src_count || !dst_count) {
    return fail(why, "shape element count overflows 64 bits"), std::nullopt;
  }
  // The layouts are descriptive, but a reader trusts them to name the
  // transform's two sides; a mismatch means the metadata is corrupt.
  auto layouts_are = [&](TensorLayout s, TensorLayout d) {
    return source_layout == s && stored_layout == d;
  };
  switch (transform) {
    case Transform::kIdentity:
      // Same elements in the same order; only the shape's grouping differs.
      if (src.empty() || dst.empty() || *src_count != *dst_count) {
        return fail(why, "identity transform with differing element counts"), std::nullopt;
      }
      return p;
    case Transform::kConvOIHWToOHWI:
      if (!layouts_are(TensorLayout::kOIHW, TensorLayout::kOHWI)) {
        return fail(why, "conv transform needs layouts OIHW -> OHWI"), std::nullopt;
      }
      if (src.size() != 4 || !equal(dst, {src[0], src[2], src[3], src[1]})) {
        return fail(why, "stored shape is not the OHWI permute of the OIHW source"), std::nullopt;
      }
      return p;
    case Transform::kConvTransposeToOHWIRotated: {
      if (!layouts_are(TensorLayout::kIOHW, TensorLayout::kOHWIRotated)) {
        return fail(why, "transposed conv transform needs layouts IOHW -> OHWIRotated"),
               std::nullopt;
      }
      if (src.size() != 4 || dst.size() != 4 || dst[1] != src[2] || dst[2] != src[3]) {
        return fail(why, "transposed conv shapes do not match"), std::nullopt;
      }
      const uint64_t ig = dst[3];
      if (src[0] % ig != 0) return fail(why, "input channels not a multiple of I/g"), std::nullopt;
      const uint64_t g = src[0] / ig;
      const auto out = checked_mul(src[1], g);
      if (!out || dst[0] != *out) {
        return fail(why, "output channels != O/g * groups"), std::nullopt;
      }
      return p;
    }
    case Transform::kLinearFlattenToOHWC:
      if (!layouts_are(TensorLayout::kOI, TensorLayout::kOHWI)) {
        return fail(why, "linear flatten transform needs layouts OI -> OHWI"), std::nullopt;
      }
      // dst[0] == src[0] != 0, so equal counts mean H*W*C == in.
      if (src.size() != 2 || dst.size() != 4 || dst[0] != src[0] || *dst_count != *src_count) {
        return fail(why, "linear flatten shapes do not match"), std::nullopt;
      }
      return p;
  }
  return fail(why, "unknown transform"), std::nullopt;
}

void apply(const TensorPlan& plan, const void* src, void* dst, size_t elem_size) {
  by_size<GatherOp>(elem_size, make_walk(plan), src, dst);
}

void invert(const TensorPlan& plan, const void* stored, void* src, size_t elem_size) {
  by_size<ScatterOp>(elem_size, make_walk(plan), stored, src);
}

uint64_t source_index(const TensorPlan& plan, uint64_t stored_index) {
  const Walk w = make_walk(plan);
  int64_t s = w.base;
  for (int k = w.rank - 1; k >= 0; --k) {
    s += int64_t(stored_index % w.dims[k]) * w.strides[k];
    stored_index /= w.dims[k];
  }
  return uint64_t(s);
}

}  // namespace mpsbc
