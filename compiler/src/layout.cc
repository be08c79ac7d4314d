#include "mpsbc/layout.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "checked_math.h"

namespace mpsbc {
namespace {

// A stored tensor as a box of up to five dimensions; stored element
// (i0..i4) is source element base + sum(i_k * stride_k). Negative strides
// express the transposed conv's kernel rotation. Only source_index() walks
// it; apply() and invert() take the blocked fast paths below.
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

// ---------------------------------------------------------------------------
// Fast paths. Every non-identity transform is, per output channel (or per
// (group, output channel) for transposed convs), a 2-D transpose of a small
// matrix: OIHW -> OHWI turns [Ig][kH*kW] into [kH*kW][Ig]; the transposed
// conv reads [Ig][kH*kW] rows Og*kH*kW apart and writes the kernel positions
// in reverse; Linear after flatten turns [C][H*W] into [H*W][C]. One kernel,
// transpose(), does all of them and their inverses through signed row
// strides. When either side of the matrix is 1 the stored order is the
// source order, so the tensor is one memcpy.

// out[c * out_rs + r] = in[r * in_rs + c] for r < rows, c < cols. Rows of
// `in` and of `out` are contiguous; the row strides may be negative (that is
// how the kernel rotation is expressed).
template <typename T>
void transpose_scalar(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t rows,
                      size_t cols) {
  // 16x16 tiles keep both sides' lines in L1 while a tile is done.
  constexpr size_t kTile = 16;
  for (size_t r0 = 0; r0 < rows; r0 += kTile) {
    const size_t r1 = std::min(rows, r0 + kTile);
    for (size_t c0 = 0; c0 < cols; c0 += kTile) {
      const size_t c1 = std::min(cols, c0 + kTile);
      for (size_t r = r0; r < r1; ++r) {
        const T* row = in + ptrdiff_t(r) * in_rs;
        for (size_t c = c0; c < c1; ++c) out[ptrdiff_t(c) * out_rs + ptrdiff_t(r)] = row[c];
      }
    }
  }
}

#if defined(__SSE2__)
// Tensors larger than this are written with non-temporal stores, as glibc's
// memcpy does past a similar size: they do not fit the last-level cache, so
// reading each destination line before overwriting it (what an ordinary
// store does) would cost a third more memory traffic. Smaller ones, such as
// the compiler's streamed pieces, stay in cache for the checksum that reads
// them next.
constexpr uint64_t kStreamingBytes = uint64_t{16} << 20;

inline void store4(uint32_t* p, __m128i v, bool nt) {
  if (nt) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), v);
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
  }
}

inline __m128 load4(const uint32_t* p) {
  return _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// 4x4 blocks of 32-bit elements through SSE2 registers (SSE2 is part of
// x86-64, so no runtime dispatch). Rows go in bands of 16 so that each
// destination row receives 64 contiguous bytes (a whole cache line) per
// band. `nt`: the caller checked that every 4-row group of `out` is 16-byte
// aligned. The two loop orders below were chosen by measurement
// (BENCHMARKS.md): 3x3 kernels have 9 destination rows, Linear after
// flatten 36, and non-temporal stores slow down badly once more lines are
// open than the core has write-combining buffers.
void transpose_u32(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                   size_t rows, size_t cols, bool nt) {
  constexpr size_t kBand = 16;
  constexpr size_t kFewColumns = 12;
  const size_t r4 = rows & ~size_t{3}, c4 = cols & ~size_t{3};
  auto tile = [&](size_t r, size_t c) {
    const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
    const __m128 a = load4(i0), b = load4(i0 + in_rs);
    const __m128 d = load4(i0 + 2 * in_rs), e = load4(i0 + 3 * in_rs);
    // _MM_TRANSPOSE4_PS, spelled out: shuffles move bits, never convert.
    const __m128 t0 = _mm_unpacklo_ps(a, b), t1 = _mm_unpacklo_ps(d, e);
    const __m128 t2 = _mm_unpackhi_ps(a, b), t3 = _mm_unpackhi_ps(d, e);
    uint32_t* o = out + ptrdiff_t(c) * out_rs + ptrdiff_t(r);
    store4(o, _mm_castps_si128(_mm_movelh_ps(t0, t1)), nt);
    store4(o + out_rs, _mm_castps_si128(_mm_movehl_ps(t1, t0)), nt);
    store4(o + 2 * out_rs, _mm_castps_si128(_mm_movelh_ps(t2, t3)), nt);
    store4(o + 3 * out_rs, _mm_castps_si128(_mm_movehl_ps(t3, t2)), nt);
  };
  // Columns left over (the ninth of a 3x3 kernel): gather 4 rows at once.
  auto column = [&](size_t r, size_t c) {
    const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
    const __m128i v =
        _mm_set_epi32(int(i0[3 * in_rs]), int(i0[2 * in_rs]), int(i0[in_rs]), int(i0[0]));
    store4(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r), v, nt);
  };
  for (size_t r0 = 0; r0 < r4; r0 += kBand) {
    const size_t r1 = std::min(r4, r0 + kBand);
    if (!nt || cols <= kFewColumns) {
      // Finish 4 source rows at a time (their lines are then done with);
      // every destination row stays open, in L1 or, for few rows, in a
      // write-combining buffer.
      for (size_t r = r0; r < r1; r += 4) {
        size_t c = 0;
        for (; c < c4; c += 4) tile(r, c);
        for (; c < cols; ++c) column(r, c);
      }
    } else {
      // Non-temporal stores to many destination rows: fill 4 of them with a
      // whole line each before moving on, so only 4 are open at a time.
      size_t c = 0;
      for (; c < c4; c += 4) {
        for (size_t r = r0; r < r1; r += 4) tile(r, c);
      }
      for (; c < cols; ++c) {
        for (size_t r = r0; r < r1; r += 4) column(r, c);
      }
    }
  }
  if (r4 < rows) {
    transpose_scalar(in + ptrdiff_t(r4) * in_rs, in_rs, out + ptrdiff_t(r4), out_rs, rows - r4,
                     cols);
  }
}
#endif

// `streaming`: the whole tensor is larger than the cache (see
// kStreamingBytes); non-temporal stores are used where `out` allows them.
template <typename T>
void transpose(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t rows, size_t cols,
               bool streaming) {
#if defined(__SSE2__)
  if constexpr (sizeof(T) == 4) {
    const bool nt = streaming && reinterpret_cast<uintptr_t>(out) % 16 == 0 && out_rs % 4 == 0;
    transpose_u32(in, in_rs, out, out_rs, rows, cols, nt);
    return;
  }
#endif
  (void)streaming;
  transpose_scalar(in, in_rs, out, out_rs, rows, cols);
}

// Orders the non-temporal stores before whatever the caller does next.
inline void store_fence(bool streaming) {
#if defined(__SSE2__)
  if (streaming) _mm_sfence();
#else
  (void)streaming;
#endif
}

// The shape of a transform as the fast paths see it.
struct Shape {
  Transform transform = Transform::kIdentity;
  uint64_t count = 0;  // elements
  // Conv and Linear-after-flatten: `outer` matrices of [inner][spatial]
  // (source) <-> [spatial][inner] (stored).
  uint64_t outer = 0, inner = 0, spatial = 0;
  // Transposed conv only: groups and output channels per group.
  uint64_t groups = 0, og = 0;
};

Shape shape_of(const TensorPlan& p) {
  Shape s;
  s.transform = p.transform;
  s.count = p.element_count();
  const auto& src = p.source_shape;
  const auto& dst = p.stored_shape;
  switch (p.transform) {
    case Transform::kIdentity:
      break;
    case Transform::kConvOIHWToOHWI:
      s.outer = src[0], s.inner = src[1], s.spatial = src[2] * src[3];
      break;
    case Transform::kLinearFlattenToOHWC:
      s.outer = dst[0], s.inner = dst[3], s.spatial = dst[1] * dst[2];
      break;
    case Transform::kConvTransposeToOHWIRotated:
      s.inner = dst[3], s.og = src[1], s.spatial = src[2] * src[3];
      s.groups = src[0] / s.inner;
      break;
  }
  // A permute of a [n][1] or [1][n] matrix moves nothing.
  if ((s.transform == Transform::kConvOIHWToOHWI ||
       s.transform == Transform::kLinearFlattenToOHWC) &&
      (s.inner == 1 || s.spatial == 1)) {
    s.transform = Transform::kIdentity;
  }
  return s;
}

// Transposed convs are done in blocks of 16 output x 16 input channels: a
// source row (one input channel) is Og*kH*kW elements long, so walking one
// output channel at a time would touch a new page per input channel, and
// walking one input channel across all outputs would scatter the stores over
// the whole tensor. A block's source (16 rows x 16 kernels) and stored bytes
// (16 kernels x 16 rows per output channel) stay in L1/L2, and every stored
// row gets a whole cache line (16 four-byte elements) per block.
constexpr uint64_t kConvTransposeBand = 16;

// Source order -> stored order.
template <typename T>
void forward(const Shape& s, const T* src, T* dst) {
  const ptrdiff_t in = ptrdiff_t(s.inner), sp = ptrdiff_t(s.spatial);
  const bool streaming = s.count * sizeof(T) > kStreamingBytes;
  switch (s.transform) {
    case Transform::kIdentity:
      std::memcpy(dst, src, s.count * sizeof(T));
      return;
    case Transform::kConvOIHWToOHWI:
    case Transform::kLinearFlattenToOHWC:
      for (uint64_t o = 0; o < s.outer; ++o) {
        const ptrdiff_t base = ptrdiff_t(o) * in * sp;
        transpose(src + base, sp, dst + base, in, s.inner, s.spatial, streaming);
      }
      break;
    case Transform::kConvTransposeToOHWIRotated: {
      // dst[g*Og + o][sp-1-k][i] = src[g*Ig + i][o][k]: writing the stored
      // kernel rows bottom-up (negative stride) is the 180° rotation.
      const ptrdiff_t og = ptrdiff_t(s.og);
      for (uint64_t g = 0; g < s.groups; ++g) {
        for (uint64_t o0 = 0; o0 < s.og; o0 += kConvTransposeBand) {
          const uint64_t o1 = std::min(s.og, o0 + kConvTransposeBand);
          for (uint64_t i0 = 0; i0 < s.inner; i0 += kConvTransposeBand) {
            const size_t band = size_t(std::min(kConvTransposeBand, s.inner - i0));
            for (uint64_t o = o0; o < o1; ++o) {
              const T* in_block =
                  src + ((ptrdiff_t(g) * in + ptrdiff_t(i0)) * og + ptrdiff_t(o)) * sp;
              T* out_block =
                  dst + ((ptrdiff_t(g) * og + ptrdiff_t(o)) * sp + (sp - 1)) * in + ptrdiff_t(i0);
              transpose(in_block, og * sp, out_block, -in, band, s.spatial, streaming);
            }
          }
        }
      }
      break;
    }
  }
  store_fence(streaming);
}

// Stored order -> source order: the same transposes with the sides swapped.
template <typename T>
void backward(const Shape& s, const T* dst, T* src) {
  const ptrdiff_t in = ptrdiff_t(s.inner), sp = ptrdiff_t(s.spatial);
  const bool streaming = s.count * sizeof(T) > kStreamingBytes;
  switch (s.transform) {
    case Transform::kIdentity:
      std::memcpy(src, dst, s.count * sizeof(T));
      return;
    case Transform::kConvOIHWToOHWI:
    case Transform::kLinearFlattenToOHWC:
      for (uint64_t o = 0; o < s.outer; ++o) {
        const ptrdiff_t base = ptrdiff_t(o) * in * sp;
        transpose(dst + base, in, src + base, sp, s.spatial, s.inner, streaming);
      }
      break;
    case Transform::kConvTransposeToOHWIRotated: {
      const ptrdiff_t og = ptrdiff_t(s.og);
      for (uint64_t g = 0; g < s.groups; ++g) {
        for (uint64_t o0 = 0; o0 < s.og; o0 += kConvTransposeBand) {
          const uint64_t o1 = std::min(s.og, o0 + kConvTransposeBand);
          for (uint64_t i0 = 0; i0 < s.inner; i0 += kConvTransposeBand) {
            const size_t band = size_t(std::min(kConvTransposeBand, s.inner - i0));
            for (uint64_t o = o0; o < o1; ++o) {
              const T* in_block =
                  dst + ((ptrdiff_t(g) * og + ptrdiff_t(o)) * sp + (sp - 1)) * in + ptrdiff_t(i0);
              T* out_block = src + ((ptrdiff_t(g) * in + ptrdiff_t(i0)) * og + ptrdiff_t(o)) * sp;
              transpose(in_block, -in, out_block, og * sp, s.spatial, band, streaming);
            }
          }
        }
      }
      break;
    }
  }
  store_fence(streaming);
}

template <typename T>
struct ForwardOp {
  static void run(const Shape& s, const T* in, T* out) { forward(s, in, out); }
};
template <typename T>
struct BackwardOp {
  static void run(const Shape& s, const T* in, T* out) { backward(s, in, out); }
};

template <template <typename> class Op>
void by_size(size_t elem_size, const Shape& s, const void* in, void* out) {
  switch (elem_size) {
    case 1:
      Op<uint8_t>::run(s, static_cast<const uint8_t*>(in), static_cast<uint8_t*>(out));
      break;
    case 2:
      Op<uint16_t>::run(s, static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out));
      break;
    case 4:
      Op<uint32_t>::run(s, static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out));
      break;
    default:
      break;
  }
}

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
  return {Transform::kConvOIHWToOHWI,
          TensorLayout::kOIHW,
          {out, ig, kh, kw},
          TensorLayout::kOHWI,
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
    return {
        Transform::kIdentity, TensorLayout::kOI, {out, in}, TensorLayout::kOHWI, {out, 1, 1, in}};
  }
  return {Transform::kLinearFlattenToOHWC,
          TensorLayout::kOI,
          {out, in},
          TensorLayout::kOHWI,
          {out, input_chw[1], input_chw[2], input_chw[0]}};
}

TensorPlan plan_vector(uint64_t n) {
  return {Transform::kIdentity, TensorLayout::kVector, {n}, TensorLayout::kVector, {n}};
}

std::optional<TensorPlan> plan_from_stored(Transform transform, TensorLayout source_layout,
                                           std::span<const uint64_t> src,
                                           TensorLayout stored_layout,
                                           std::span<const uint64_t> dst, std::string* why) {
  TensorPlan p{
      transform, source_layout, {src.begin(), src.end()}, stored_layout, {dst.begin(), dst.end()}};
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
  by_size<ForwardOp>(elem_size, shape_of(plan), src, dst);
}

void invert(const TensorPlan& plan, const void* stored, void* src, size_t elem_size) {
  by_size<BackwardOp>(elem_size, shape_of(plan), stored, src);
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
