// The PyTorch -> MPS layout rules, in one place.
//
// The compiler uses plan_*() and apply() to write stored tensors; the dump
// tool uses invert() to give back the exact source bytes. The CPU reference
// behind --check does not use these plans: it reads the stored layouts with
// its own index arithmetic on purpose (mpsbc/reference.h). A TensorPlan is derived
// from shapes alone, so a reader can rebuild it from a bundle's metadata
// (transform, source shape, stored shape) with plan_from_stored().
//
// Rules (docs/FORMAT.md has the reasons and sources):
//   Conv2d           [O][I/g][kH][kW] -> [O][kH][kW][I/g]    permute (0,2,3,1)
//   ConvTranspose2d  [I][O/g][kH][kW] -> [O][kH][kW][I/g]    per group swap of
//                    in/out, kernel rotated 180°: dst[g,o][kH-1-h][kW-1-w][i]
//                    = src[g,i][o][h][w] (MPS does not rotate, PyTorch's
//                    transposed conv does)
//   grouped Conv2d MPS refuses (--legalize): [O][I/g][kH][kW] -> [O][kH][kW][I],
//                    the dense equivalent, block diagonal, zeros elsewhere
//   grouped ConvTranspose2d MPS refuses (--legalize): [I][O/g][kH][kW] ->
//                    [O][kH][kW][I] rotated 180°, the dense equivalent's
//                    weight, block diagonal, zeros elsewhere
//   Linear after flatten of [C][H][W]: [out][C*H*W] -> [out][H][W][C]
//   Linear on a vector: [out][in] -> [out][1][1][in], same bytes
//   vectors: unchanged; a one-element vector broadcast to [C] (PReLU)
//   probe feature map [N][C][H][W] -> [N][H][W][C]          permute (0,2,3,1)
// All functions are pure and thread-safe.

#ifndef MPSBC_LAYOUT_H_
#define MPSBC_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mpsb/types.h"

namespace mpsbc {

using mpsb::TensorLayout;
using mpsb::Transform;

struct TensorPlan {
  Transform transform = Transform::kIdentity;
  TensorLayout source_layout = TensorLayout::kVector;
  std::vector<uint64_t> source_shape;
  TensorLayout stored_layout = TensorLayout::kVector;
  std::vector<uint64_t> stored_shape;

  // Stored elements, and source elements (fewer for a broadcast and a
  // grouped conv stored dense).
  uint64_t element_count() const;
  uint64_t source_element_count() const;
};

// REQUIRES: out % groups == 0, in % groups == 0, all sizes > 0.
TensorPlan plan_conv_weight(uint64_t out, uint64_t in, uint64_t groups, uint64_t kh, uint64_t kw);
TensorPlan plan_conv_transpose_weight(uint64_t in, uint64_t out, uint64_t groups, uint64_t kh,
                                      uint64_t kw);
// The grouped conv stored as the equivalent dense one (groups 1): source
// [out][in/groups][kh][kw], stored [out][kh][kw][in], block diagonal.
// REQUIRES: groups > 1 dividing out and in.
TensorPlan plan_conv_weight_dense(uint64_t out, uint64_t in, uint64_t groups, uint64_t kh,
                                  uint64_t kw);
// The grouped transposed conv stored as the equivalent dense one's weight
// (groups 1): source [in][out/groups][kh][kw], stored [out][kh][kw][in]
// rotated 180°, block diagonal.
// REQUIRES: groups > 1 dividing out and in.
TensorPlan plan_conv_transpose_weight_dense(uint64_t in, uint64_t out, uint64_t groups, uint64_t kh,
                                            uint64_t kw);
// input_chw empty: a plain vector input. Otherwise {C, H, W} with C*H*W == in.
TensorPlan plan_linear_weight(uint64_t out, uint64_t in, std::span<const uint64_t> input_chw);
TensorPlan plan_vector(uint64_t n);
// A vector of n stored values from a source of source_n (1 or n): a
// broadcast of the one value, or the vector unchanged. nn.PReLU with
// num_parameters=1 has one slope; MPS takes one per feature channel.
TensorPlan plan_broadcast(uint64_t source_n, uint64_t n);

// A probe's feature map as PyTorch gives it: [N, C, H, W] stored NHWC
// (permute), or a Linear's [N, F] stored [N][1][1][F] (Identity).
// REQUIRES: shape has 2 or 4 dimensions, all > 0.
TensorPlan plan_feature_map(std::span<const uint64_t> shape);

// Rebuilds the plan a compiler used from what a bundle records. Returns
// nullopt (and sets *why) when the shapes do not fit the transform.
std::optional<TensorPlan> plan_from_stored(Transform transform, TensorLayout source_layout,
                                           std::span<const uint64_t> source_shape,
                                           TensorLayout stored_layout,
                                           std::span<const uint64_t> stored_shape,
                                           std::string* why = nullptr);

// Source order -> stored order. elem_size is 1, 2 or 4 bytes; src holds
// plan.source_element_count() elements, dst plan.element_count(); they must
// not overlap.
void apply(const TensorPlan& plan, const void* src, void* dst, size_t elem_size);
// Stored order -> source order: the exact inverse of apply().
void invert(const TensorPlan& plan, const void* stored, void* src, size_t elem_size);

// Index into the source tensor of stored element `stored_index`;
// kNoSourceElement for the zeros of a grouped conv stored dense.
inline constexpr uint64_t kNoSourceElement = ~uint64_t{0};
uint64_t source_index(const TensorPlan& plan, uint64_t stored_index);

// The vector instructions apply() and invert() use for 4-byte elements:
// the best this CPU and OS support, found at first use (x86-64: SSE2 always,
// AVX2 and AVX-512F when present; arm64: NEON; elsewhere portable C++).
// Every level gives the same bytes. MPSB_MAX_CPU_ISA=scalar|sse2|avx2|
// avx512|neon in the environment caps the level, as ONEDNN_MAX_CPU_ISA does
// for oneDNN (neon and sse2 are both the 4-wide level: either cap gives
// NEON on arm64, SSE2 on x86-64); tests and benchmarks use set_max_isa() to
// run each level in one process.
enum class Isa { kScalar, kSse2, kAvx2, kAvx512, kNeon };
Isa max_isa();
// Caps the level at `cap` (never above what the CPU has) and returns the
// level now in use. Not for use while another thread transforms.
Isa set_max_isa(Isa cap);
const char* isa_name(Isa isa);

// The data caches the transforms choose block order and store kind by:
// read at first use from /sys/devices/system/cpu/cpu0/cache (sysconf() as
// the fallback, then 32 KiB 8-way L1, 512 KiB L2 and 8 MiB last level).
// Tensors larger than the last level are written with non-temporal stores;
// those between L2 and the last level take the AVX2 3x3 blocks with fewer
// shuffles (compiler/src/layout.cc); destination
// rows that would share an L1 set more often than it has ways are written
// through a small buffer (compiler/src/layout.cc).
struct CacheGeometry {
  uint64_t l1_bytes = 32 << 10;
  uint64_t l1_ways = 8;
  uint64_t last_level_bytes = 8 << 20;
  uint64_t l2_bytes = 512 << 10;  // per core; the last level when there is none
};
CacheGeometry cache_geometry();
// Plans for `g` instead of this CPU's caches (tests: to reach every path on
// any machine; invalid values fall back to the defaults above). Like
// set_max_isa(), not for use while another thread transforms.
void set_cache_geometry(const CacheGeometry& g);

}  // namespace mpsbc

#endif  // MPSBC_LAYOUT_H_
