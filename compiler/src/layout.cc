#include "mpsbc/layout.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "checked_math.h"
#include "transpose16.h"  // x86-64: <immintrin.h>, transpose16()

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
    case Transform::kBroadcast:
      // Every stored element is source element 0.
      w.rank = 1;
      w.dims[0] = p.element_count();
      w.strides[0] = 0;
      break;
    case Transform::kConvOIHWToOHWI:
    case Transform::kNCHWToNHWC: {  // the same permute (0, 2, 3, 1)
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
    case Transform::kConvGroupedToDense:
    case Transform::kConvTransposeGroupedToDenseRotated:
      break;  // zeros have no source element: source_index() handles it
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
bool rows_thrash_l1(ptrdiff_t row_bytes, size_t open_rows);
CacheGeometry& geometry();

// The element-by-element transpose: 1- and 2-byte elements at every
// level, and 4-byte ones at the scalar level and for what the vector
// blocks leave over (fewer than 4 rows). One side of these matrices is
// nearly always short (a kernel's kH*kW, a band of 16 channels, 3 input
// channels of a stem), and the loop over it is unrolled with its length a
// template parameter: each step is then that many independent loads and
// stores at fixed offsets from a few base pointers. Callgrind counts 2.6
// instructions per element where the nested loop apps write spends 6
// (0.65 against 1.51 per byte, BENCHMARKS.md).

// `W` source columns starting at in[0] of `rows` rows -> `W` destination
// rows: each source row is read once, W elements in a row, and written
// to the W destination rows at offset r.
template <size_t W, typename T>
void by_source_row(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t rows) {
  T* dst[W];
#pragma GCC unroll 16
  for (size_t k = 0; k < W; ++k) dst[k] = out + ptrdiff_t(k) * out_rs;
  for (size_t r = 0; r < rows; ++r) {
    const T* row = in + ptrdiff_t(r) * in_rs;
#pragma GCC unroll 16
    for (size_t k = 0; k < W; ++k) dst[k][r] = row[k];
  }
}

// `R` source rows -> `cols` destination rows of R elements each, every
// destination row written in one run.
template <size_t R, typename T>
void by_destination_row(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t cols) {
  const T* src[R];
#pragma GCC unroll 16
  for (size_t k = 0; k < R; ++k) src[k] = in + ptrdiff_t(k) * in_rs;
  for (size_t c = 0; c < cols; ++c) {
    T* dst = out + ptrdiff_t(c) * out_rs;
#pragma GCC unroll 16
    for (size_t k = 0; k < R; ++k) dst[k] = src[k][c];
  }
}

// Each destination row in one run, as the nested loop writes it (what a
// tensor streaming from and to DRAM needs), the source read down a column
// 8 rows at a time.
template <typename T>
void by_destination_column(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t rows,
                           size_t cols) {
  constexpr size_t kRun = 8;
  const size_t r8 = rows - rows % kRun;
  for (size_t c = 0; c < cols; ++c) {
    T* dst = out + ptrdiff_t(c) * out_rs;
    const T* src = in + ptrdiff_t(c);
    size_t r = 0;
    for (; r < r8; r += kRun) {
      const T* p = src + ptrdiff_t(r) * in_rs;
#pragma GCC unroll 8
      for (size_t k = 0; k < kRun; ++k) dst[r + k] = p[ptrdiff_t(k) * in_rs];
    }
    for (; r < rows; ++r) dst[r] = src[ptrdiff_t(r) * in_rs];
  }
}

constexpr size_t kUnrolled = 16;  // the longest run unrolled

template <typename T, size_t... N>
constexpr auto source_row_kernels(std::index_sequence<N...>) {
  return std::array{&by_source_row<N + 1, T>...};
}
template <typename T, size_t... N>
constexpr auto destination_row_kernels(std::index_sequence<N...>) {
  return std::array{&by_destination_row<N + 1, T>...};
}

template <typename T>
void transpose_scalar(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t rows,
                      size_t cols) {
  if (rows == 0 || cols == 0) return;
  constexpr auto kBySource = source_row_kernels<T>(std::make_index_sequence<kUnrolled>());
  constexpr auto kByDestination = destination_row_kernels<T>(std::make_index_sequence<kUnrolled>());
  constexpr ptrdiff_t kSize = sizeof(T);
  // Few source rows (the stem's [3][49]): every destination row in one
  // run, unless the source rows would evict each other from L1.
  if (rows < cols && rows <= kUnrolled && !rows_thrash_l1(in_rs * kSize, rows)) {
    kByDestination[rows - 1](in, in_rs, out, out_rs, cols);
    return;
  }
  // Otherwise each destination row in one run per band of source rows,
  // reading down the columns: the band's lines (one per row) stay in L1
  // from one column to the next. Measured 1.2-1.6x the nested loop on
  // Linear after flatten and the 4x4 control, where runs of source rows
  // (below) lost on Linear (0.65x), streaming from DRAM, for writing 16
  // destination rows at once (BENCHMARKS.md).
  const uint64_t row_lines = std::min<uint64_t>(64, uint64_t(in_rs < 0 ? -in_rs : in_rs) * kSize);
  const size_t band =
      std::max<size_t>(8, geometry().l1_bytes * 3 / 4 / std::max<uint64_t>(row_lines, 1));
  if (!rows_thrash_l1(in_rs * kSize, std::min(rows, band))) {
    for (size_t r0 = 0; r0 < rows; r0 += band) {
      by_destination_column(in + ptrdiff_t(r0) * in_rs, in_rs, out + ptrdiff_t(r0), out_rs,
                            std::min(band, rows - r0), cols);
    }
    return;
  }
  // Source rows that share L1 sets (a transposed conv's, a page or more
  // apart): each read once, in runs of up to 16 columns, as many
  // destination rows open as share no L1 set beyond its ways, over bands
  // of 64 source rows, whose lines stay in L1 from one run to the next.
  size_t run = kUnrolled;
  while (run > 1 && rows_thrash_l1(out_rs * kSize, run)) --run;
  constexpr size_t kBand = 64;
  for (size_t r0 = 0; r0 < rows; r0 += kBand) {
    const size_t n = std::min(kBand, rows - r0);
    for (size_t c0 = 0; c0 < cols; c0 += run) {
      const size_t w = std::min(run, cols - c0);
      kBySource[w - 1](in + ptrdiff_t(r0) * in_rs + ptrdiff_t(c0), in_rs,
                       out + ptrdiff_t(c0) * out_rs + ptrdiff_t(r0), out_rs, n);
    }
  }
}

// The cache geometry (layout.h) is read from Linux's description in
// /sys/devices/system/cpu/cpu0/cache/index*/ (x86-64 and arm64 alike);
// glibc's sysconf() is the fallback (it reads CPUID on x86), then the
// defaults of CacheGeometry, the sizes of the smallest cores the project
// targets.
// "48K" -> 49152; 0 when unreadable.
uint64_t read_sysfs_size(const std::string& path) {
  std::ifstream f(path);
  uint64_t n = 0;
  std::string unit;
  if (!(f >> n)) return 0;
  f >> unit;
  if (unit == "K") return n << 10;
  if (unit == "M") return n << 20;
  if (unit == "G") return n << 30;
  return n;
}

CacheGeometry read_cache_geometry() {
  CacheGeometry g;
  bool have_l1 = false, have_l2 = false, have_last = false;
  uint64_t last_level = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), type_file(dir + "type");
    uint64_t level = 0;
    std::string type;
    if (!(level_file >> level) || !(type_file >> type)) break;
    if (type == "Instruction") continue;
    const uint64_t size = read_sysfs_size(dir + "size");
    const uint64_t ways = read_sysfs_size(dir + "ways_of_associativity");
    if (level == 1 && size != 0 && ways != 0) {
      g.l1_bytes = size, g.l1_ways = ways, have_l1 = true;
    }
    if (level == 2 && size != 0) g.l2_bytes = size, have_l2 = true;
    if (level >= last_level && size != 0) {
      last_level = level, g.last_level_bytes = size, have_last = true;
    }
  }
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL1_DCACHE_ASSOC)
  if (!have_l1) {
    const long size = sysconf(_SC_LEVEL1_DCACHE_SIZE), ways = sysconf(_SC_LEVEL1_DCACHE_ASSOC);
    if (size > 0 && ways > 0) g.l1_bytes = uint64_t(size), g.l1_ways = uint64_t(ways);
  }
#endif
#if defined(_SC_LEVEL2_CACHE_SIZE)
  if (!have_l2 && sysconf(_SC_LEVEL2_CACHE_SIZE) > 0) {
    g.l2_bytes = uint64_t(sysconf(_SC_LEVEL2_CACHE_SIZE));
  }
#endif
#if defined(_SC_LEVEL3_CACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  if (!have_last) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l3 > 0) {
      g.last_level_bytes = uint64_t(l3);
    } else if (l2 > 0) {
      g.last_level_bytes = uint64_t(l2);
    }
  }
#endif
  return g;
}

// A way smaller than a line, or a cache of one way, says the numbers are
// not real (some hypervisors report 0 or 1): the defaults then.
CacheGeometry checked(CacheGeometry g) {
  if (g.l1_ways < 2 || g.l1_bytes / g.l1_ways < 64 || g.last_level_bytes == 0) {
    return CacheGeometry{};
  }
  // A core without an L2 of its own (or none reported): the last level.
  if (g.l2_bytes == 0 || g.l2_bytes > g.last_level_bytes) g.l2_bytes = g.last_level_bytes;
  return g;
}

CacheGeometry& geometry() {
  static CacheGeometry g = checked(read_cache_geometry());
  return g;
}

// Whether `open_rows` destination rows `row_bytes` apart, each receiving
// stores in turn, keep their lines in L1 until they are complete. Addresses
// a multiple of L1 size / ways apart share a set, so power-of-two channel
// counts put the rows of a 3x3 kernel's [9][I] (4 KiB apart for I = 1024)
// or Linear's [36][256] (1 KiB) into one or a few sets. When more of them
// share a set than it has ways, each line is evicted before it is full and
// read back from L2 for the next 16 bytes: callgrind counts 4 write misses
// per destination line for the SSE2 4x4 blocks on a 32 KiB 8-way L1, 1
// on a 48 KiB 12-way one (BENCHMARKS.md). With as many rows as ways or
// fewer, the extra copy costs more than the misses it saves.
#if defined(__SSE2__) || defined(__ARM_NEON)
#define MPSB_VEC4 1  // 4 x 32-bit vectors: SSE2 on x86-64, NEON on arm64
#endif

// Tensors larger than the last-level cache are written with non-temporal
// stores (x86-64), as glibc's memcpy does past a similar size: reading each
// destination line before overwriting it (what an ordinary store does)
// would cost a third more memory traffic. Smaller ones, such as the
// compiler's streamed pieces, stay in cache for the checksum that reads
// them next.
bool is_streaming(uint64_t bytes) { return bytes > geometry().last_level_bytes; }

// Where a tensor's bytes live while it is transformed (the benchmarks run
// each tensor over and over; the compiler's pieces were just read): in
// L2, in the cache levels beyond it, or streaming from and to memory.
enum class Residence { kL2, kCache, kStreaming };

Residence residence(uint64_t bytes) {
  if (is_streaming(bytes)) return Residence::kStreaming;
  return bytes <= geometry().l2_bytes ? Residence::kL2 : Residence::kCache;
}

bool rows_thrash_l1(ptrdiff_t row_bytes, size_t open_rows) {
  const CacheGeometry& g = geometry();
  const uint64_t way = g.l1_bytes / g.l1_ways;
  const uint64_t stride = uint64_t(row_bytes < 0 ? -row_bytes : row_bytes) % way;
  // Row k lands in the set of k * stride mod way: the sets repeat after
  // way / gcd(stride, way) rows.
  const uint64_t period = stride == 0 ? 1 : way / std::gcd(stride, way);
  const uint64_t per_set = (open_rows + period - 1) / period;
  return per_set > g.l1_ways;
}

#if defined(__SSE2__)
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

// One 4x4 block: out rows c..c+3, columns r..r+3.
inline void tile4x4(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs, size_t r,
                    size_t c, bool nt) {
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
}

// A column left over (the ninth of a 3x3 kernel): rows r..r+3 at once.
inline void column4(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs, size_t r,
                    size_t c, bool nt) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
  const __m128i v =
      _mm_set_epi32(int(i0[3 * in_rs]), int(i0[2 * in_rs]), int(i0[in_rs]), int(i0[0]));
  store4(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r), v, nt);
}

// Column c (>= 3) of rows r..r+3 from four row loads that end at it:
// three shuffles where column4 takes four scalar loads and three.
inline void column4_last(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                         size_t r, size_t c, bool nt) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c) - 3;
  const __m128 a = load4(i0), b = load4(i0 + in_rs);
  const __m128 d = load4(i0 + 2 * in_rs), e = load4(i0 + 3 * in_rs);
  // (a2 b2 a3 b3), (d2 e2 d3 e3) -> (a3 b3 d3 e3)
  const __m128 v = _mm_movehl_ps(_mm_unpackhi_ps(d, e), _mm_unpackhi_ps(a, b));
  store4(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r), _mm_castps_si128(v), nt);
}

// 16 elements from a 16-byte aligned `from` to `to`.
inline void copy_line(const uint32_t* from, uint32_t* to, bool nt) {
  const auto* f = reinterpret_cast<const __m128i*>(from);
  store4(to, _mm_load_si128(f), nt);
  store4(to + 4, _mm_load_si128(f + 1), nt);
  store4(to + 8, _mm_load_si128(f + 2), nt);
  store4(to + 12, _mm_load_si128(f + 3), nt);
}
#elif defined(__ARM_NEON)
// NEON is part of AArch64: no runtime dispatch. No non-temporal stores
// (`nt` is always false here).
inline void tile4x4(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs, size_t r,
                    size_t c, bool) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
  const uint32x4_t a = vld1q_u32(i0), b = vld1q_u32(i0 + in_rs);
  const uint32x4_t d = vld1q_u32(i0 + 2 * in_rs), e = vld1q_u32(i0 + 3 * in_rs);
  // vtrn pairs rows: ab.val[0] = a0 b0 a2 b2, ab.val[1] = a1 b1 a3 b3;
  // the 64-bit halves of the two pairs then make the columns.
  const uint32x4x2_t ab = vtrnq_u32(a, b), de = vtrnq_u32(d, e);
  uint32_t* o = out + ptrdiff_t(c) * out_rs + ptrdiff_t(r);
  vst1q_u32(o, vcombine_u32(vget_low_u32(ab.val[0]), vget_low_u32(de.val[0])));
  vst1q_u32(o + out_rs, vcombine_u32(vget_low_u32(ab.val[1]), vget_low_u32(de.val[1])));
  vst1q_u32(o + 2 * out_rs, vcombine_u32(vget_high_u32(ab.val[0]), vget_high_u32(de.val[0])));
  vst1q_u32(o + 3 * out_rs, vcombine_u32(vget_high_u32(ab.val[1]), vget_high_u32(de.val[1])));
}

inline void column4(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs, size_t r,
                    size_t c, bool) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
  uint32x4_t v = vdupq_n_u32(i0[0]);
  v = vsetq_lane_u32(i0[in_rs], v, 1);
  v = vsetq_lane_u32(i0[2 * in_rs], v, 2);
  v = vsetq_lane_u32(i0[3 * in_rs], v, 3);
  vst1q_u32(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r), v);
}

inline void column4_last(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                         size_t r, size_t c, bool) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c) - 3;
  const uint32x4_t a = vld1q_u32(i0), b = vld1q_u32(i0 + in_rs);
  const uint32x4_t d = vld1q_u32(i0 + 2 * in_rs), e = vld1q_u32(i0 + 3 * in_rs);
  // vtrn's val[1] = (a1 b1 a3 b3): its high half is the last column.
  const uint32x4x2_t ab = vtrnq_u32(a, b), de = vtrnq_u32(d, e);
  vst1q_u32(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r),
            vcombine_u32(vget_high_u32(ab.val[1]), vget_high_u32(de.val[1])));
}

inline void copy_line(const uint32_t* from, uint32_t* to, bool) {
  const uint32x4x4_t v = vld1q_u32_x4(from);
  vst1q_u32_x4(to, v);
}
#endif

#if defined(MPSB_VEC4)
// 4x4 blocks of 32-bit elements through SSE2 or NEON registers (both part
// of their 64-bit instruction sets, so no runtime dispatch). Rows go in bands of 16 so that each
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
  auto tile = [&](size_t r, size_t c) { tile4x4(in, in_rs, out, out_rs, r, c, nt); };
  auto column = [&](size_t r, size_t c) { column4(in, in_rs, out, out_rs, r, c, nt); };
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

// 4x4 blocks, 4 source rows at a time, for a width `kCols` fixed at
// compile time (0: `cols` at run time): the blocks of a row unrolled, and
// each column left over (the ninth of a 3x3 kernel) from four row loads
// that end at it and three shuffles. `kRow`: the source row stride fixed
// too (contiguous rows, kRow == kCols), or 0 for `in_rs`. The store kind
// is a constant of the loop, not a branch per block.
//
// Contiguous rows (a kernel's [I][kH*kW], Linear's [C][H*W]): conv3x3_c512
// at the sse2 level went from 0.49x to 0.70-0.85x memcpy against
// transpose_u32 (BENCHMARKS.md).
//
// `kPrefetch`, for the transposed conv's source rows, a page or more
// apart, which the hardware prefetchers do not follow: each group of 4
// rows first asks for its line `prefetch` elements on (the output channel
// after next) into L2; into L1 the 512 rows of a pass, all in one L1 set,
// would evict each other. Written straight to the destination rows when
// they do not thrash L1, this measured 0.41-0.43x memcpy at the sse2 level
// against 0.34x for the staged band (convT4x4_512to256), and with the
// width fixed 0.555 -> 0.380 instructions per byte, 0.33x -> 0.47-0.52x.
template <size_t kCols, ptrdiff_t kRow, bool kPrefetch>
void transpose_u32_fixed(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                         size_t rows, size_t cols, bool nt, ptrdiff_t prefetch) {
  const ptrdiff_t rs = kRow != 0 ? kRow : in_rs;
  const size_t width = kCols != 0 ? kCols : cols;
  const size_t r4 = rows & ~size_t{3}, c4 = width & ~size_t{3};
  auto blocks = [&](auto kNt) {
    const uint32_t* row = in;
    uint32_t* col = out;
    for (size_t r = 0; r < r4; r += 4, row += 4 * rs, col += 4) {
      if constexpr (kPrefetch) {
        for (ptrdiff_t k = 0; k < 4; ++k) __builtin_prefetch(row + k * rs + prefetch, 0, 2);
      }
      size_t c = 0;
#pragma GCC unroll 16
      for (; c < c4; c += 4) tile4x4(row, rs, col, out_rs, 0, c, kNt());
      if (kCols != 0 && c4 >= 4) {
#pragma GCC unroll 4
        for (; c < width; ++c) column4_last(row, rs, col, out_rs, 0, c, kNt());
      }
      for (; c < width; ++c) column4(row, rs, col, out_rs, 0, c, kNt());
    }
  };
  if (nt) {
    blocks(std::true_type{});
  } else {
    blocks(std::false_type{});
  }
  if (r4 < rows) {
    transpose_scalar(in + ptrdiff_t(r4) * rs, rs, out + ptrdiff_t(r4), out_rs, rows - r4, width);
  }
}

// The transpose_u32_fixed for `cols` (the areas of 2x2, 3x3, 4x4, 5x5 and
// 7x7 kernels, Linear's 6x6 and 7x7 maps): of contiguous rows
// (`kContiguous`), or prefetched rows `in_rs` apart (a transposed conv's);
// otherwise nullptr, or for prefetched rows the run-time width.
using FixedKernel = void (*)(const uint32_t*, ptrdiff_t, uint32_t*, ptrdiff_t, size_t, size_t, bool,
                             ptrdiff_t);
template <bool kContiguous>
FixedKernel fixed_kernel(size_t cols) {
  auto of = [](auto width) -> FixedKernel {
    constexpr size_t kW = decltype(width)::value;
    return transpose_u32_fixed < kW, kContiguous ? ptrdiff_t(kW) : 0, !kContiguous > ;
  };
  switch (cols) {
    case 4:
      return of(std::integral_constant<size_t, 4>{});
    case 9:
      return of(std::integral_constant<size_t, 9>{});
    case 16:
      return of(std::integral_constant<size_t, 16>{});
    case 25:
      return of(std::integral_constant<size_t, 25>{});
    case 36:
      return of(std::integral_constant<size_t, 36>{});
    case 49:
      return of(std::integral_constant<size_t, 49>{});
    default:
      return kContiguous ? nullptr : transpose_u32_fixed<0, 0, true>;
  }
}

// A transpose whose destination rows would evict each other from L1
// (rows_thrash_l1) or that uses non-temporal stores goes through a small
// buffer: `kernel` (one of the transposes above or below) turns a band of
// 16 source rows into [cols][16] in the buffer, whose rows are consecutive
// lines, and each 64-byte buffer row is then stored to its destination row
// in one go. Every destination line is then written whole, once, and with
// non-temporal stores every write-combining buffer fills before it is
// flushed. The buffer stays in L1; the extra load and store per 16 bytes
// are far cheaper than the L2 round trip (or partial line write to memory)
// they replace. REQUIRES: out_rs % 16 == 0, so that every destination row
// starts at the same offset within a line.
template <typename Kernel>
void transpose_staged(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                      size_t rows, size_t cols, bool nt, ptrdiff_t prefetch, Kernel kernel) {
  constexpr size_t kLine = 16;   // 4-byte elements per 64-byte line
  constexpr size_t kChunk = 64;  // columns per pass: a 4 KiB buffer
  // The rows up to the first line boundary, directly.
  const uintptr_t misaligned = reinterpret_cast<uintptr_t>(out) % 64;
  size_t r = 0;
  if (misaligned != 0) {
    r = std::min(rows, size_t(64 - misaligned) / 4);
    kernel(in, in_rs, out, out_rs, r, cols, nt);
  }
  alignas(64) uint32_t buffer[kChunk * kLine];
  for (; r + kLine <= rows; r += kLine) {
    const uint32_t* band = in + ptrdiff_t(r) * in_rs;
    if (prefetch != 0) {
      for (size_t k = 0; k < kLine; ++k) {
        __builtin_prefetch(band + ptrdiff_t(k) * in_rs + prefetch, 0, 2);
      }
    }
    for (size_t c0 = 0; c0 < cols; c0 += kChunk) {
      const size_t n = std::min(kChunk, cols - c0);
      kernel(band + c0, in_rs, buffer, ptrdiff_t(kLine), kLine, n, false);
      for (size_t c = 0; c < n; ++c) {
        copy_line(buffer + c * kLine, out + ptrdiff_t(c0 + c) * out_rs + ptrdiff_t(r), nt);
      }
    }
  }
  if (r < rows) kernel(in + ptrdiff_t(r) * in_rs, in_rs, out + r, out_rs, rows - r, cols, nt);
}
#endif  // MPSB_VEC4

#if defined(__x86_64__) && defined(__SSE2__)
// The same transpose in 8x8 blocks through AVX2's 32-byte registers, for
// transposed convs that are not staged (invert()): there it was 1.4x faster
// than the SSE2 4x4 blocks writing straight to the destination (each stored
// line gets two 32-byte stores instead of four 16-byte ones); staged, the
// SSE2 blocks are faster. On the 3x3 convs' [I][9] and Linear's [C][36] matrices
// it measured 0.55-0.8x of the SSE2 path on this machine's AMD EPYC, even
// with everything in L1 (BENCHMARKS.md). AVX2 is not part of baseline
// x86-64, so these functions are compiled for it alone and chosen at run
// time (transpose() below).
#define MPSB_AVX2 __attribute__((target("avx2")))

MPSB_AVX2 inline __m256 load8(const uint32_t* p) {
  return _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Non-temporal stores go out as two 16-byte halves: large allocations from
// malloc are 16-byte aligned, not 32 (transpose() checks 16).
MPSB_AVX2 inline void store8(uint32_t* p, __m256 v, bool nt) {
  const __m256i x = _mm256_castps_si256(v);
  if (nt) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(x));
    _mm_stream_si128(reinterpret_cast<__m128i*>(p + 4), _mm256_extracti128_si256(x, 1));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), x);
  }
}

// One 8x8 block: out rows c..c+7, columns r..r+7.
MPSB_AVX2 inline void tile8x8(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                              size_t r, size_t c, bool nt) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
  const __m256 a0 = load8(i0), a1 = load8(i0 + in_rs), a2 = load8(i0 + 2 * in_rs),
               a3 = load8(i0 + 3 * in_rs), a4 = load8(i0 + 4 * in_rs), a5 = load8(i0 + 5 * in_rs),
               a6 = load8(i0 + 6 * in_rs), a7 = load8(i0 + 7 * in_rs);
  // 4x4 transposes within each 128-bit lane, then the lanes swapped.
  const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
  const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
  const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
  const __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  uint32_t* o = out + ptrdiff_t(c) * out_rs + ptrdiff_t(r);
  store8(o, _mm256_permute2f128_ps(u0, u4, 0x20), nt);
  store8(o + out_rs, _mm256_permute2f128_ps(u1, u5, 0x20), nt);
  store8(o + 2 * out_rs, _mm256_permute2f128_ps(u2, u6, 0x20), nt);
  store8(o + 3 * out_rs, _mm256_permute2f128_ps(u3, u7, 0x20), nt);
  store8(o + 4 * out_rs, _mm256_permute2f128_ps(u0, u4, 0x31), nt);
  store8(o + 5 * out_rs, _mm256_permute2f128_ps(u1, u5, 0x31), nt);
  store8(o + 6 * out_rs, _mm256_permute2f128_ps(u2, u6, 0x31), nt);
  store8(o + 7 * out_rs, _mm256_permute2f128_ps(u3, u7, 0x31), nt);
}

// Column c (>= 7) of rows r..r+7 from eight row loads that end at it.
MPSB_AVX2 inline void column8_last(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out,
                                   ptrdiff_t out_rs, size_t r, size_t c, bool nt) {
  const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c) - 7;
  const __m256 t0 = _mm256_unpackhi_ps(load8(i0), load8(i0 + in_rs));
  const __m256 t1 = _mm256_unpackhi_ps(load8(i0 + 2 * in_rs), load8(i0 + 3 * in_rs));
  const __m256 t2 = _mm256_unpackhi_ps(load8(i0 + 4 * in_rs), load8(i0 + 5 * in_rs));
  const __m256 t3 = _mm256_unpackhi_ps(load8(i0 + 6 * in_rs), load8(i0 + 7 * in_rs));
  // High lanes: (a6 b6 a7 b7) ... -> (a7 b7 c7 d7), (e7 f7 g7 h7).
  const __m256 u0 = _mm256_shuffle_ps(t0, t1, 0xEE), u1 = _mm256_shuffle_ps(t2, t3, 0xEE);
  store8(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r), _mm256_permute2f128_ps(u0, u1, 0x31), nt);
}

// Rows r..r+7 of the columns c..cols-1 that do not fill an 8x8 block (the
// ninth of a 3x3 kernel, the last four of Linear's 6x6): 4x4 blocks while 4
// are left, then one 8-wide gather per column instead of 8 scalar loads.
// `gather`: the caller checked that 7 * in_rs fits the gather's 32-bit
// offsets.
MPSB_AVX2 inline void columns8(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                               size_t r, size_t c, size_t cols, bool nt, bool gather) {
  for (; c + 4 <= cols; c += 4) {
    tile4x4(in, in_rs, out, out_rs, r, c, nt);
    tile4x4(in, in_rs, out, out_rs, r + 4, c, nt);
  }
  const int rs = int(in_rs);
  const __m256i offsets = _mm256_setr_epi32(0, rs, 2 * rs, 3 * rs, 4 * rs, 5 * rs, 6 * rs, 7 * rs);
  for (; c < cols; ++c) {
    const uint32_t* i0 = in + ptrdiff_t(r) * in_rs + ptrdiff_t(c);
    __m256i v;
    if (gather) {
      v = _mm256_i32gather_epi32(reinterpret_cast<const int*>(i0), offsets, 4);
    } else {
      v = _mm256_setr_epi32(int(i0[0]), int(i0[in_rs]), int(i0[2 * in_rs]), int(i0[3 * in_rs]),
                            int(i0[4 * in_rs]), int(i0[5 * in_rs]), int(i0[6 * in_rs]),
                            int(i0[7 * in_rs]));
    }
    store8(out + ptrdiff_t(c) * out_rs + ptrdiff_t(r), _mm256_castsi256_ps(v), nt);
  }
}

// transpose_u32 with 8x8 blocks; the same two loop orders, and rows left
// over (fewer than 8) go to the SSE2 path.
MPSB_AVX2 void transpose_u32_avx2(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out,
                                  ptrdiff_t out_rs, size_t rows, size_t cols, bool nt) {
  constexpr size_t kBand = 16;
  constexpr size_t kFewColumns = 12;
  // Stores that cross a cache line cost two: when every destination row
  // starts at the same offset within 32 bytes, the first rows (4 when, as
  // from malloc, `out` is 16 bytes past a 32-byte boundary) go through the
  // SSE2 path so that every 32-byte store is aligned.
  const uintptr_t misaligned = reinterpret_cast<uintptr_t>(out) % 32;
  if (out_rs % 8 == 0 && misaligned != 0 && misaligned % 4 == 0) {
    const size_t lead = std::min(rows, size_t(32 - misaligned) / 4);
    transpose_u32(in, in_rs, out, out_rs, lead, cols, nt);
    in += ptrdiff_t(lead) * in_rs;
    out += lead;
    rows -= lead;
  }
  const size_t r8 = rows & ~size_t{7}, c8 = cols & ~size_t{7};
  const bool gather = (in_rs < 0 ? -in_rs : in_rs) <= ptrdiff_t{INT32_MAX / 8};
  for (size_t r0 = 0; r0 < r8; r0 += kBand) {
    const size_t r1 = std::min(r8, r0 + kBand);
    if (!nt || cols <= kFewColumns) {
      for (size_t r = r0; r < r1; r += 8) {
        size_t c = 0;
        for (; c < c8; c += 8) tile8x8(in, in_rs, out, out_rs, r, c, nt);
        columns8(in, in_rs, out, out_rs, r, c8, cols, nt, gather);
      }
    } else {
      for (size_t c = 0; c < c8; c += 8) {
        for (size_t r = r0; r < r1; r += 8) tile8x8(in, in_rs, out, out_rs, r, c, nt);
      }
      for (size_t r = r0; r < r1; r += 8) columns8(in, in_rs, out, out_rs, r, c8, cols, nt, gather);
    }
  }
  if (r8 < rows) {
    transpose_u32(in + ptrdiff_t(r8) * in_rs, in_rs, out + ptrdiff_t(r8), out_rs, rows - r8, cols,
                  nt);
  }
}

// The 3x3 kernels' split by index modulo 3 (see block16x9 below) for AVX2:
// 24 consecutive elements (a, b, c) -> o_q[m] = x[3m + q], m < 8. Since 3
// and 8 are coprime, the 8 elements an output needs sit in 8 different
// lanes of a, b and c: two blends gather them into one register and one
// lane permute puts them in order.
MPSB_AVX2 inline void split3_8(__m256 a, __m256 b, __m256 c, __m256& o0, __m256& o1, __m256& o2) {
  const __m256i i0 = _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5);
  const __m256i i1 = _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6);
  const __m256i i2 = _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7);
  o0 = _mm256_permutevar8x32_ps(_mm256_blend_ps(_mm256_blend_ps(a, b, 0x92), c, 0x24), i0);
  o1 = _mm256_permutevar8x32_ps(_mm256_blend_ps(_mm256_blend_ps(a, b, 0x24), c, 0x49), i1);
  o2 = _mm256_permutevar8x32_ps(_mm256_blend_ps(_mm256_blend_ps(a, b, 0x49), c, 0x92), i2);
}

// 8 rows of a 3x3 kernel ([8][9], contiguous) -> [9][8], as block16x9.
MPSB_AVX2 inline void block8x9(const uint32_t* in, uint32_t* out, ptrdiff_t out_rs, bool nt) {
  __m256 x[9];
#pragma GCC unroll 9
  for (int q = 0; q < 9; ++q) x[q] = load8(in + 8 * q);
  __m256 by_b[3][3];  // [b][chunk]: x[3m + b] for m in chunk*8 .. chunk*8+7
#pragma GCC unroll 3
  for (int ch = 0; ch < 3; ++ch) {
    split3_8(x[3 * ch], x[3 * ch + 1], x[3 * ch + 2], by_b[0][ch], by_b[1][ch], by_b[2][ch]);
  }
#pragma GCC unroll 3
  for (int b = 0; b < 3; ++b) {
    __m256 k0, k1, k2;  // rows b, 3 + b, 6 + b
    split3_8(by_b[b][0], by_b[b][1], by_b[b][2], k0, k1, k2);
    store8(out + b * out_rs, k0, nt);
    store8(out + (3 + b) * out_rs, k1, nt);
    store8(out + (6 + b) * out_rs, k2, nt);
  }
}

// A [rows][9] matrix (in_rs 9) -> [9][rows] in blocks of 8 rows; the rest
// through the SSE2 path. The same alignment lead as transpose_u32_avx2.
// `tiles`: an 8x8 block and the ninth column from loads ending at it
// (16 loads, 31 shuffles per block) instead of block8x9 (9 loads, 54
// blends and permutes). For a tensor beyond L2, tiles measured 0.71-0.74x
// memcpy against 0.54-0.63x on conv3x3_c512; within L2, 0.38-0.39x
// against 0.46-0.47x on conv3x3_c64 (BENCHMARKS.md).
MPSB_AVX2 void transpose_u32_avx2_x9(const uint32_t* in, uint32_t* out, ptrdiff_t out_rs,
                                     size_t rows, bool nt, bool tiles) {
  const uintptr_t misaligned = reinterpret_cast<uintptr_t>(out) % 32;
  if (out_rs % 8 == 0 && misaligned != 0 && misaligned % 4 == 0) {
    const size_t lead = std::min(rows, size_t(32 - misaligned) / 4);
    transpose_u32(in, 9, out, out_rs, lead, 9, nt);
    in += lead * 9;
    out += lead;
    rows -= lead;
  }
  const size_t r8 = rows & ~size_t{7};
  if (tiles) {
    for (size_t r = 0; r < r8; r += 8) {
      tile8x8(in, 9, out, out_rs, r, 0, nt);
      column8_last(in, 9, out, out_rs, r, 8, nt);
    }
  } else {
    for (size_t r = 0; r < r8; r += 8) block8x9(in + r * 9, out + r, out_rs, nt);
  }
  if (r8 < rows) transpose_u32(in + r8 * 9, 9, out + r8, out_rs, rows - r8, 9, nt);
}

#undef MPSB_AVX2

// ---------------------------------------------------------------------------
// AVX-512: 16x16 blocks, so that every load and every store is one whole
// 64-byte cache line when the rows are 64-byte aligned. Measured against
// the SSE2 4x4 and AVX2 8x8 blocks in BENCHMARKS.md. Like AVX2, chosen at
// run time; the functions alone are compiled for AVX-512F.
#define MPSB_AVX512 __attribute__((target("avx512f")))
#define MPSB_AVX512_INLINE __attribute__((target("avx512f"), always_inline)) inline

MPSB_AVX512 inline void store16(uint32_t* p, __m512 v, bool nt) {
  if (nt) {
    _mm512_stream_ps(reinterpret_cast<float*>(p), v);
  } else {
    _mm512_storeu_ps(reinterpret_cast<float*>(p), v);
  }
}

// A whole 16x16 block: out rows 0..15, columns 0..15. kPrefetch: touch
// each source row `prefetch` elements on first (the transposed conv's next
// output channel): its rows are a page or more apart, and the hardware
// prefetchers do not follow them.
template <bool kNt, bool kPrefetch>
MPSB_AVX512_INLINE void block16(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out,
                                ptrdiff_t out_rs, ptrdiff_t prefetch) {
  // The rows are walked with one pointer each way. The empty asm keeps GCC
  // from precomputing all 32 row offsets instead, which spills them to the
  // stack and reloads them on every block.
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if constexpr (kPrefetch)
      _mm_prefetch(reinterpret_cast<const char*>(in + prefetch), _MM_HINT_T0);
    r[i] = _mm512_loadu_ps(in);
    in += in_rs;
    asm("" : "+r"(in));
  }
  transpose16(r);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    store16(out, r[i], kNt);
    out += out_rs;
    asm("" : "+r"(out));
  }
}

// A partial block, rows x cols (each 1..16), through masked loads and
// stores: nothing outside the block is read or written.
MPSB_AVX512 inline void block16_part(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out,
                                     ptrdiff_t out_rs, size_t rows, size_t cols) {
  const __mmask16 col_mask = __mmask16((1u << cols) - 1);
  const __mmask16 row_mask = __mmask16((1u << rows) - 1);
  __m512 r[16];
#pragma GCC unroll 16
  for (size_t i = 0; i < 16; ++i) {
    r[i] =
        i < rows ? _mm512_maskz_loadu_ps(col_mask, in + ptrdiff_t(i) * in_rs) : _mm512_setzero_ps();
  }
  transpose16(r);
  for (size_t i = 0; i < cols; ++i) {
    _mm512_mask_storeu_ps(reinterpret_cast<float*>(out + ptrdiff_t(i) * out_rs), row_mask, r[i]);
  }
}

// Rows 0..rows-1 (a multiple of 16) of `in`, all `cols` columns, in strips
// of 16 rows: each strip's source lines are read once, and every store
// but those of a last partial block is a whole line.
template <bool kNt, bool kPrefetch>
MPSB_AVX512 void strips16(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out, ptrdiff_t out_rs,
                          size_t rows, size_t cols, ptrdiff_t prefetch) {
  const size_t c16 = cols & ~size_t{15};
  for (size_t r = 0; r < rows; r += 16) {
    for (size_t c = 0; c < c16; c += 16) {
      block16<kNt, kPrefetch>(in + c, in_rs, out + ptrdiff_t(c) * out_rs, out_rs, prefetch);
    }
    if (c16 < cols) {
      block16_part(in + c16, in_rs, out + ptrdiff_t(c16) * out_rs, out_rs, 16, cols - c16);
    }
    in += 16 * in_rs;
    out += 16;
  }
}

// 48 consecutive elements (a, b, c) split by index modulo 3:
// o_q[m] = x[3m + q], m < 16. Two permutes each: the elements below 32
// come from (a, b), the rest from c.
MPSB_AVX512 inline void split3(__m512 a, __m512 b, __m512 c, __m512& o0, __m512& o1, __m512& o2) {
  alignas(64) static const int kIndex[3][16] = {
      {0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 1, 4, 7, 10, 13},
      {1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 2, 5, 8, 11, 14},
      {2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0, 3, 6, 9, 12, 15}};
  const __m512i i0 = _mm512_load_si512(kIndex[0]);
  const __m512i i1 = _mm512_load_si512(kIndex[1]);
  const __m512i i2 = _mm512_load_si512(kIndex[2]);
  o0 = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(a, i0, b), 0xF800, i0, c);
  o1 = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(a, i1, b), 0xF800, i1, c);
  o2 = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(a, i2, b), 0xFC00, i2, c);
}

// 16 rows of a 3x3 kernel ([16][9], contiguous) -> [9][16]: element
// 9j + 3a + b goes to row 3a + b, column j. Splitting by index modulo 3
// twice does it in 36 permutes with 9 whole-line loads, where a 16x16
// block needs 16 partial loads and 64 shuffles (measured 1.25x slower).
template <bool kNt>
MPSB_AVX512_INLINE void block16x9(const uint32_t* in, uint32_t* out, ptrdiff_t out_rs) {
  __m512 x[9];
#pragma GCC unroll 9
  for (int q = 0; q < 9; ++q) x[q] = _mm512_loadu_ps(in + 16 * q);
  __m512 by_b[3][3];  // [b][chunk]: x[3m + b] for m in chunk*16 .. chunk*16+15
#pragma GCC unroll 3
  for (int ch = 0; ch < 3; ++ch) {
    split3(x[3 * ch], x[3 * ch + 1], x[3 * ch + 2], by_b[0][ch], by_b[1][ch], by_b[2][ch]);
  }
#pragma GCC unroll 3
  for (int b = 0; b < 3; ++b) {
    __m512 k0, k1, k2;  // rows b, 3 + b, 6 + b
    split3(by_b[b][0], by_b[b][1], by_b[b][2], k0, k1, k2);
    store16(out + b * out_rs, k0, kNt);
    store16(out + (3 + b) * out_rs, k1, kNt);
    store16(out + (6 + b) * out_rs, k2, kNt);
  }
}

// Rows 0..rows-1 (a multiple of 16) of a [rows][9] matrix, 16 at a time. The source
// is read 4 blocks ahead (measured 5 % faster than leaving it to the
// hardware prefetcher).
template <bool kNt>
MPSB_AVX512 void strips16x9(const uint32_t* in, uint32_t* out, ptrdiff_t out_rs, size_t rows) {
  for (size_t r = 0; r < rows; r += 16) {
#pragma GCC unroll 9
    for (int q = 0; q < 9; ++q) {
      _mm_prefetch(reinterpret_cast<const char*>(in + 4 * 144 + 16 * q), _MM_HINT_T0);
    }
    block16x9<kNt>(in, out, out_rs);
    in += 144;
    out += 16;
  }
}

// transpose_u32 with 16x16 blocks. `prefetch`: see block16. `streaming`:
// non-temporal stores where the rows are 64-byte aligned.
MPSB_AVX512 void transpose_u32_avx512(const uint32_t* in, ptrdiff_t in_rs, uint32_t* out,
                                      ptrdiff_t out_rs, size_t rows, size_t cols, bool streaming,
                                      ptrdiff_t prefetch) {
  constexpr size_t kB = 16;
  // A 64-byte store that crosses a cache line costs two (it halved the
  // transposed conv's speed): when every destination row starts at the
  // same offset within a line, the rows up to the first line boundary go
  // first as a partial block.
  const uintptr_t misaligned = reinterpret_cast<uintptr_t>(out) % 64;
  if (out_rs % 16 == 0 && misaligned != 0 && misaligned % 4 == 0) {
    const size_t lead = std::min(rows, size_t(64 - misaligned) / 4);
    for (size_t c = 0; c < cols; c += kB) {
      block16_part(in + c, in_rs, out + ptrdiff_t(c) * out_rs, out_rs, lead,
                   std::min(kB, cols - c));
    }
    in += ptrdiff_t(lead) * in_rs;
    out += lead;
    rows -= lead;
  }
  const bool nt = streaming && reinterpret_cast<uintptr_t>(out) % 64 == 0 && out_rs % 16 == 0;
  const size_t r16 = rows & ~(kB - 1);
  if (cols == 9 && in_rs == 9) {
    (nt ? strips16x9<true> : strips16x9<false>)(in, out, out_rs, r16);
  } else {
    auto strips = nt ? (prefetch != 0 ? strips16<true, true> : strips16<true, false>)
                     : (prefetch != 0 ? strips16<false, true> : strips16<false, false>);
    strips(in, in_rs, out, out_rs, r16, cols, prefetch);
  }
  if (r16 < rows) {
    const uint32_t* i0 = in + ptrdiff_t(r16) * in_rs;
    for (size_t c = 0; c < cols; c += kB) {
      block16_part(i0 + c, in_rs, out + ptrdiff_t(c) * out_rs + ptrdiff_t(r16), out_rs, rows - r16,
                   std::min(kB, cols - c));
    }
  }
}

#undef MPSB_AVX512
#undef MPSB_AVX512_INLINE
#endif

// The level in use; -1 until first use. Relaxed atomics: every thread that
// reads it computes the same value.
std::atomic<int> g_isa{-1};

Isa cpu_isa() {
#if defined(__x86_64__) && defined(__SSE2__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
  return Isa::kSse2;
#elif defined(__SSE2__)
  return Isa::kSse2;
#elif defined(__ARM_NEON)
  return Isa::kNeon;
#else
  return Isa::kScalar;
#endif
}

std::optional<Isa> parse_isa(std::string_view name) {
  for (Isa isa : {Isa::kScalar, Isa::kSse2, Isa::kAvx2, Isa::kAvx512, Isa::kNeon}) {
    if (name == isa_name(isa)) return isa;
  }
  return std::nullopt;
}

Isa current_isa() {
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa >= 0) return Isa(isa);
  Isa cap = Isa::kAvx512;
  if (const char* env = std::getenv("MPSB_MAX_CPU_ISA")) {
    if (const auto parsed = parse_isa(env)) cap = *parsed;
  }
  return set_max_isa(cap);
}

// `where`: see Residence; for a tensor larger than the cache
// (kStreaming), non-temporal stores are used where `out` allows them.
// `wide`: use the AVX2 8x8 blocks when the CPU has them (transposed convs).
// `prefetch`: see block16 (AVX-512) and transpose_u32_fixed.
template <typename T>
void transpose(const T* in, ptrdiff_t in_rs, T* out, ptrdiff_t out_rs, size_t rows, size_t cols,
               Residence where, bool wide = false, ptrdiff_t prefetch = 0) {
  const bool streaming = where == Residence::kStreaming;
#if defined(MPSB_VEC4)
  if constexpr (sizeof(T) == 4) {
    const Isa isa = current_isa();
#if defined(__x86_64__)
    if (isa == Isa::kAvx512) {
      transpose_u32_avx512(in, in_rs, out, out_rs, rows, cols, streaming, prefetch);
      return;
    }
#endif
#if defined(__SSE2__)
    const bool nt = streaming && reinterpret_cast<uintptr_t>(out) % 16 == 0 && out_rs % 4 == 0;
#else
    const bool nt = false;
#endif
    const bool staged = out_rs % 16 == 0 && rows >= 16 && (nt || rows_thrash_l1(out_rs * 4, cols));
    if (prefetch != 0 && !staged) {
      fixed_kernel<false>(cols)(in, in_rs, out, out_rs, rows, cols, false, prefetch);
      return;
    }
    auto run = [&](auto kernel) {
      if (staged) {
        transpose_staged(in, in_rs, out, out_rs, rows, cols, nt, prefetch, kernel);
      } else {
        kernel(in, in_rs, out, out_rs, rows, cols, nt);
      }
    };
#if defined(__x86_64__)
    // Staged, the 16x16 blocks measured faster as SSE2 4x4 blocks than as
    // AVX2 8x8 ones (BENCHMARKS.md).
    if (isa == Isa::kAvx2 && wide && !staged) {
      run(transpose_u32_avx2);
      return;
    }
    if (isa == Isa::kAvx2 && cols == 9 && in_rs == 9) {
      const bool tiles = where == Residence::kCache;
      run([tiles](const uint32_t* i, ptrdiff_t, uint32_t* o, ptrdiff_t o_rs, size_t r, size_t,
                  bool n) { transpose_u32_avx2_x9(i, o, o_rs, r, n, tiles); });
      return;
    }
#endif
    if (const FixedKernel fixed = fixed_kernel<true>(cols);
        isa != Isa::kScalar && fixed != nullptr && in_rs == ptrdiff_t(cols)) {
      // transpose_staged hands the kernel all columns at once (every fixed
      // width is within its 64-column chunk); anything else would go to
      // the general blocks.
      run([fixed, cols](const uint32_t* i, ptrdiff_t i_rs, uint32_t* o, ptrdiff_t o_rs, size_t r,
                        size_t c, bool n) {
        if (c == cols && i_rs == ptrdiff_t(cols)) {
          fixed(i, i_rs, o, o_rs, r, c, n, 0);
        } else {
          transpose_u32(i, i_rs, o, o_rs, r, c, n);
        }
      });
      return;
    }
    if (isa != Isa::kScalar) {
      run(transpose_u32);
      return;
    }
  }
#endif
  (void)where, (void)streaming, (void)wide, (void)prefetch;
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
    case Transform::kBroadcast:           // apply() and invert() handle them before
    case Transform::kConvGroupedToDense:  // (to_dense, from_dense)
    case Transform::kConvTransposeGroupedToDenseRotated:
      break;
    case Transform::kConvOIHWToOHWI:
    case Transform::kNCHWToNHWC:
      s.transform = Transform::kConvOIHWToOHWI;  // the same permute
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

// 1- and 2-byte elements (scalar transposes), and every size at the scalar
// level, do transposed convs in blocks of 16 output x 16 input channels: a
// block's source (16 rows x 16 kernels) and stored bytes (16 kernels x 16
// rows per output channel) stay in L1/L2. The vector levels walk one output
// channel at a time with a prefetch instead (reorder below); that measured
// 2.8x faster at the SSE2 level than these blocks, which leave the source
// lines, 16 KiB apart, to the hardware prefetchers (BENCHMARKS.md).
constexpr uint64_t kConvTransposeBand = 16;

// Source order -> stored order (`to_stored`) or back: the same 2-D
// transposes either way, with the sides swapped.
template <typename T>
void reorder(const Shape& s, const T* in, T* out, bool to_stored) {
  if (s.transform == Transform::kIdentity) {
    std::memcpy(out, in, s.count * sizeof(T));
    return;
  }
  const Residence where = residence(s.count * sizeof(T));
  const bool streaming = where == Residence::kStreaming;
  // One transpose: `rows` x `cols` elements of the source side (at element
  // offset src, rows src_rs apart) <-> cols x rows of the stored side.
  // `prefetch`: see block16; it is about the source rows, so forward only.
  auto move = [&](ptrdiff_t src, ptrdiff_t src_rs, ptrdiff_t stored, ptrdiff_t stored_rs,
                  size_t rows, size_t cols, bool wide, ptrdiff_t prefetch) {
    if (to_stored) {
      transpose(in + src, src_rs, out + stored, stored_rs, rows, cols, where, wide, prefetch);
    } else {
      transpose(in + stored, stored_rs, out + src, src_rs, cols, rows, where, wide);
    }
  };
  const ptrdiff_t in_ch = ptrdiff_t(s.inner), sp = ptrdiff_t(s.spatial);
  switch (s.transform) {
    case Transform::kIdentity:
    case Transform::kBroadcast:
    case Transform::kConvGroupedToDense:
    case Transform::kConvTransposeGroupedToDenseRotated:
      break;
    case Transform::kConvOIHWToOHWI:
    case Transform::kLinearFlattenToOHWC:
    case Transform::kNCHWToNHWC:  // shape_of() makes it kConvOIHWToOHWI
      for (uint64_t o = 0; o < s.outer; ++o) {
        const ptrdiff_t base = ptrdiff_t(o) * in_ch * sp;
        move(base, sp, base, in_ch, s.inner, s.spatial, false, 0);
      }
      break;
    case Transform::kConvTransposeToOHWIRotated: {
      // dst[g*Og + o][sp-1-k][i] = src[g*Ig + i][o][k]: the stored kernel
      // rows taken bottom-up (negative stride) are the 180° rotation.
      const ptrdiff_t og = ptrdiff_t(s.og);
      auto src_at = [&](uint64_t g, uint64_t i, uint64_t o) {
        return ((ptrdiff_t(g) * in_ch + ptrdiff_t(i)) * og + ptrdiff_t(o)) * sp;
      };
      auto stored_at = [&](uint64_t g, uint64_t o, uint64_t i) {
        return ((ptrdiff_t(g) * og + ptrdiff_t(o)) * sp + (sp - 1)) * in_ch + ptrdiff_t(i);
      };
      if (sizeof(T) == 4 && current_isa() != Isa::kScalar) {
        // One output channel at a time keeps the fewest destination lines
        // open (a 16-row band's 16 kernel rows), and prefetching the next
        // channel's block of each source row (rows are a page or more
        // apart, which the hardware prefetchers do not follow) hides part
        // of their latency (BENCHMARKS.md). AVX-512 moves whole lines in
        // its 16x16 blocks; below it the 4x4 blocks go straight to the
        // destination (transpose_u32_fixed) or, where its rows would
        // thrash L1, through transpose_staged; either prefetches into L2
        // only: the source rows fall into one L1 set and would evict each
        // other there.
        for (uint64_t g = 0; g < s.groups; ++g) {
          for (uint64_t o = 0; o < s.og; ++o) {
            move(src_at(g, 0, o), og * sp, stored_at(g, o, 0), -in_ch, s.inner, s.spatial, true,
                 2 * sp);
          }
        }
        break;
      }
      for (uint64_t g = 0; g < s.groups; ++g) {
        for (uint64_t o0 = 0; o0 < s.og; o0 += kConvTransposeBand) {
          const uint64_t o1 = std::min(s.og, o0 + kConvTransposeBand);
          for (uint64_t i0 = 0; i0 < s.inner; i0 += kConvTransposeBand) {
            const size_t band = size_t(std::min(kConvTransposeBand, s.inner - i0));
            for (uint64_t o = o0; o < o1; ++o) {
              move(src_at(g, i0, o), og * sp, stored_at(g, o, i0), -in_ch, band, s.spatial, true,
                   0);
            }
          }
        }
      }
      break;
    }
  }
  store_fence(streaming);
}

// Calls f(in, out) with both pointers typed as the unsigned integer of
// elem_size (1, 2 or 4) bytes: the transforms move elements, not values.
template <typename F>
void with_element_type(size_t elem_size, const void* in, void* out, F&& f) {
  switch (elem_size) {
    case 1:
      f(static_cast<const uint8_t*>(in), static_cast<uint8_t*>(out));
      break;
    case 2:
      f(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out));
      break;
    case 4:
      f(static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out));
      break;
    default:
      break;
  }
}

void reorder_bytes(size_t elem_size, const Shape& s, const void* in, void* out, bool to_stored) {
  with_element_type(elem_size, in, out, [&](auto* a, auto* b) { reorder(s, a, b, to_stored); });
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

// A grouped conv stored dense (docs/FORMAT.md, ConvGroupedToDense): source
// [O][Ig][kH][kW], stored [O][kH][kW][g*Ig]; output channel o belongs to
// group o / (O/g) and its kernel sits at input channels [group*Ig,
// (group+1)*Ig) of the stored row, every other element is zero.
struct Dense {
  uint64_t out = 0, ig = 0, spatial = 0, in = 0, og = 0;
  explicit Dense(const TensorPlan& p)
      : out(p.source_shape[0]),
        ig(p.source_shape[1]),
        spatial(p.source_shape[2] * p.source_shape[3]),
        in(p.stored_shape[3]),
        og(p.source_shape[0] / (p.stored_shape[3] / p.source_shape[1])) {}
  // Where output channel o's block starts in its stored row.
  uint64_t block(uint64_t o) const { return o / og * ig; }
};

// A grouped transposed conv stored dense (docs/FORMAT.md,
// ConvTransposeGroupedToDenseRotated): source [I][Og][kH][kW], stored
// [O][kH][kW][I] with the kernel rotated 180°; output channel o belongs to
// group o / Og and its kernel sits at input channels [group*Ig,
// (group+1)*Ig) of the stored row, every other element is zero.
struct DenseT {
  uint64_t in = 0, og = 0, spatial = 0, out = 0, ig = 0;
  explicit DenseT(const TensorPlan& p)
      : in(p.source_shape[0]),
        og(p.source_shape[1]),
        spatial(p.source_shape[2] * p.source_shape[3]),
        out(p.stored_shape[0]),
        ig(p.source_shape[0] / (p.stored_shape[0] / p.source_shape[1])) {}
  // Where output channel o's block starts in its stored row.
  uint64_t block(uint64_t o) const { return o / og * ig; }
  // The source element of stored (o, k, block(o) + i): input channel
  // block(o) + i, output channel o % og, kernel position rotated.
  uint64_t source(uint64_t o, uint64_t i, uint64_t k) const {
    return ((block(o) + i) * og + o % og) * spatial + (spatial - 1 - k);
  }
};

// The grouped convs stored dense, either way, element by element through
// source_index() (the zeros have no source element). Legalized convs are
// few and small; the index arithmetic per element is not worth a blocked
// path for them.
template <typename T>
void to_dense(const TensorPlan& p, const T* src, T* dst) {
  for (uint64_t k = 0, n = p.element_count(); k < n; ++k) {
    const uint64_t s = source_index(p, k);
    dst[k] = s == kNoSourceElement ? T{0} : src[s];
  }
}

template <typename T>
void from_dense(const TensorPlan& p, const T* stored, T* src) {
  for (uint64_t k = 0, n = p.element_count(); k < n; ++k) {
    const uint64_t s = source_index(p, k);
    if (s != kNoSourceElement) src[s] = stored[k];
  }
}

}  // namespace

uint64_t TensorPlan::element_count() const { return product(stored_shape); }

uint64_t TensorPlan::source_element_count() const { return product(source_shape); }

TensorPlan plan_conv_weight(uint64_t out, uint64_t in, uint64_t groups, uint64_t kh, uint64_t kw) {
  const uint64_t ig = in / groups;
  return {Transform::kConvOIHWToOHWI,
          TensorLayout::kOIHW,
          {out, ig, kh, kw},
          TensorLayout::kOHWI,
          {out, kh, kw, ig}};
}

TensorPlan plan_conv_weight_dense(uint64_t out, uint64_t in, uint64_t groups, uint64_t kh,
                                  uint64_t kw) {
  return {Transform::kConvGroupedToDense,
          TensorLayout::kOIHW,
          {out, in / groups, kh, kw},
          TensorLayout::kOHWI,
          {out, kh, kw, in}};
}

TensorPlan plan_conv_transpose_weight(uint64_t in, uint64_t out, uint64_t groups, uint64_t kh,
                                      uint64_t kw) {
  return {Transform::kConvTransposeToOHWIRotated,
          TensorLayout::kIOHW,
          {in, out / groups, kh, kw},
          TensorLayout::kOHWIRotated,
          {out, kh, kw, in / groups}};
}

TensorPlan plan_conv_transpose_weight_dense(uint64_t in, uint64_t out, uint64_t groups, uint64_t kh,
                                            uint64_t kw) {
  return {Transform::kConvTransposeGroupedToDenseRotated,
          TensorLayout::kIOHW,
          {in, out / groups, kh, kw},
          TensorLayout::kOHWIRotated,
          {out, kh, kw, in}};
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

TensorPlan plan_broadcast(uint64_t source_n, uint64_t n) {
  if (source_n == n) return plan_vector(n);
  return {Transform::kBroadcast, TensorLayout::kVector, {1}, TensorLayout::kVector, {n}};
}

TensorPlan plan_feature_map(std::span<const uint64_t> s) {
  if (s.size() == 2) {
    return {Transform::kIdentity,
            TensorLayout::kNCHW,
            {s[0], s[1]},
            TensorLayout::kNHWC,
            {s[0], 1, 1, s[1]}};
  }
  return {Transform::kNCHWToNHWC,
          TensorLayout::kNCHW,
          {s[0], s[1], s[2], s[3]},
          TensorLayout::kNHWC,
          {s[0], s[2], s[3], s[1]}};
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
    case Transform::kBroadcast:
      if (!layouts_are(TensorLayout::kVector, TensorLayout::kVector) || src.size() != 1 ||
          src[0] != 1 || dst.size() != 1) {
        return fail(why, "broadcast needs a one-element source vector and a stored vector"),
               std::nullopt;
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
    case Transform::kConvGroupedToDense: {
      if (!layouts_are(TensorLayout::kOIHW, TensorLayout::kOHWI)) {
        return fail(why, "grouped-to-dense transform needs layouts OIHW -> OHWI"), std::nullopt;
      }
      if (src.size() != 4 || dst.size() != 4 || dst[0] != src[0] || dst[1] != src[2] ||
          dst[2] != src[3]) {
        return fail(why, "stored shape is not [O][kH][kW][I] of the [O][I/g][kH][kW] source"),
               std::nullopt;
      }
      if (dst[3] % src[1] != 0 || dst[3] / src[1] < 2) {
        return fail(why, "stored input channels are not a multiple (> 1) of I/g"), std::nullopt;
      }
      if (src[0] % (dst[3] / src[1]) != 0) {
        return fail(why, "output channels not divisible by the groups"), std::nullopt;
      }
      return p;
    }
    case Transform::kConvTransposeGroupedToDenseRotated: {
      if (!layouts_are(TensorLayout::kIOHW, TensorLayout::kOHWIRotated)) {
        return fail(why, "transposed grouped-to-dense transform needs layouts IOHW -> OHWIRotated"),
               std::nullopt;
      }
      if (src.size() != 4 || dst.size() != 4 || dst[3] != src[0] || dst[1] != src[2] ||
          dst[2] != src[3]) {
        return fail(why, "stored shape is not [O][kH][kW][I] of the [I][O/g][kH][kW] source"),
               std::nullopt;
      }
      if (dst[0] % src[1] != 0 || dst[0] / src[1] < 2) {
        return fail(why, "stored output channels are not a multiple (> 1) of O/g"), std::nullopt;
      }
      if (src[0] % (dst[0] / src[1]) != 0) {
        return fail(why, "input channels not divisible by the groups"), std::nullopt;
      }
      return p;
    }
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
    case Transform::kNCHWToNHWC:
      if (!layouts_are(TensorLayout::kNCHW, TensorLayout::kNHWC)) {
        return fail(why, "feature map transform needs layouts NCHW -> NHWC"), std::nullopt;
      }
      if (src.size() != 4 || !equal(dst, {src[0], src[2], src[3], src[1]})) {
        return fail(why, "stored shape is not the NHWC permute of the NCHW source"), std::nullopt;
      }
      return p;
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
  if (plan.transform == Transform::kBroadcast) {
    auto* out = static_cast<unsigned char*>(dst);
    for (uint64_t i = 0; i < plan.element_count(); ++i) {
      std::memcpy(out + i * elem_size, src, elem_size);
    }
    return;
  }
  if (mpsb::is_grouped_to_dense(plan.transform)) {
    with_element_type(elem_size, src, dst, [&](auto* a, auto* b) { to_dense(plan, a, b); });
    return;
  }
  reorder_bytes(elem_size, shape_of(plan), src, dst, true);
}

void invert(const TensorPlan& plan, const void* stored, void* src, size_t elem_size) {
  if (plan.transform == Transform::kBroadcast) {
    std::memcpy(src, stored, elem_size);  // the one source element
    return;
  }
  if (mpsb::is_grouped_to_dense(plan.transform)) {
    with_element_type(elem_size, stored, src, [&](auto* a, auto* b) { from_dense(plan, a, b); });
    return;
  }
  reorder_bytes(elem_size, shape_of(plan), stored, src, false);
}

CacheGeometry cache_geometry() { return geometry(); }

void set_cache_geometry(const CacheGeometry& g) { geometry() = checked(g); }

Isa max_isa() { return current_isa(); }

Isa set_max_isa(Isa cap) {
  // NEON is the 4-wide level, as SSE2 is: a cap names a width, so that one
  // MPSB_MAX_CPU_ISA value means the same on every CPU.
  const Isa cpu = cpu_isa();
  Isa isa;
  if (cpu == Isa::kNeon) {
    isa = cap == Isa::kScalar ? Isa::kScalar : Isa::kNeon;
  } else {
    isa = std::min(cap == Isa::kNeon ? Isa::kSse2 : cap, cpu);
  }
  g_isa.store(int(isa), std::memory_order_relaxed);
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kSse2:
      return "sse2";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
  }
  return "?";
}

uint64_t source_index(const TensorPlan& plan, uint64_t stored_index) {
  if (plan.transform == Transform::kConvGroupedToDense) {
    const Dense d(plan);
    const uint64_t i = stored_index % d.in, k = stored_index / d.in % d.spatial;
    const uint64_t o = stored_index / d.in / d.spatial;
    if (i < d.block(o) || i >= d.block(o) + d.ig) return kNoSourceElement;
    return (o * d.ig + (i - d.block(o))) * d.spatial + k;
  }
  if (plan.transform == Transform::kConvTransposeGroupedToDenseRotated) {
    const DenseT d(plan);
    const uint64_t i = stored_index % d.in, k = stored_index / d.in % d.spatial;
    const uint64_t o = stored_index / d.in / d.spatial;
    if (i < d.block(o) || i >= d.block(o) + d.ig) return kNoSourceElement;
    return d.source(o, i - d.block(o), k);
  }
  const Walk w = make_walk(plan);
  int64_t s = w.base;
  for (int k = w.rank - 1; k >= 0; --k) {
    s += int64_t(stored_index % w.dims[k]) * w.strides[k];
    stored_index /= w.dims[k];
  }
  return uint64_t(s);
}

}  // namespace mpsbc
