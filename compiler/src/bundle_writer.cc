#include "bundle_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "checked_math.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsb/kinds.h"
#include "mpsbc/layout.h"
#include "mpsbc/precision.h"
#include "mpsbc/report.h"
#include "source_file.h"

#define XXH_INLINE_ALL
#include "xxhash.h"

namespace mpsbc {
namespace {

namespace fb = mpsb::fb;

std::string errno_text(int err) { return std::strerror(err); }

bool pwrite_all(int fd, const void* data, size_t size, uint64_t offset) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = EIO;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// Reads up to `size` bytes; returns the count read (short only at end of
// file) or -1 with errno set.
ssize_t pread_all(int fd, void* data, size_t size, uint64_t offset) {
  auto* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports the result: close can report a deferred write
  // error (NFS), which must fail the compile.
  bool close() {
    const int fd = std::exchange(fd_, -1);
    return fd < 0 || ::close(fd) == 0;
  }

 private:
  int fd_;
};

// ".<name>.tmp-": how every temporary file for `output` starts.
std::string temp_prefix(const std::filesystem::path& output) {
  // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on
  // "." + std::string in optimized builds.
  std::string prefix = ".";
  prefix += output.filename().string();
  prefix += ".tmp-";
  return prefix;
}

// The pid in "<pid>-XXXXXX" (the part after temp_prefix), or -1 when `rest`
// is not exactly that: decimal digits, '-', six mkstemp characters.
long temp_owner(std::string_view rest) {
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash > 9 || rest.size() != dash + 7) return -1;
  long pid = 0;
  for (size_t i = 0; i < dash; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return -1;
    pid = pid * 10 + (rest[i] - '0');
  }
  for (size_t i = dash + 1; i < rest.size(); ++i) {
    const char c = rest[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return -1;
  }
  return pid;
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  // EPERM: it exists but belongs to someone else.
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// The temporary file beside the output. Unlinked on destruction unless
// renamed over the output.
class TempFile {
 public:
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    fd_.close();
    if (!path_.empty() && !committed_) ::unlink(path_.c_str());
  }

  bool create(const std::filesystem::path& output, std::string* error) {
    std::filesystem::path folder = output.parent_path();
    if (folder.empty()) folder = ".";
    // Hidden and recognizable, so a leftover after a kill is easy to spot
    // and is never mistaken for a bundle.
    // The pid lets the next compile into this folder tell a leftover of a
    // killed run from a live one (remove_stale_temp_files).
    std::string pattern =
        (folder / (temp_prefix(output) + std::to_string(::getpid()) + "-XXXXXX")).string();
    const int fd = ::mkstemp(pattern.data());
    if (fd < 0) {
      *error = "cannot create a temporary file in " + folder.string() + ": " + errno_text(errno);
      return false;
    }
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    fd_ = Fd(fd);
    path_ = pattern;
    return true;
  }

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  bool close() { return fd_.close(); }
  void commit() { committed_ = true; }

 private:
  Fd fd_;
  std::string path_;
  bool committed_ = false;
};

// Tensors are streamed in pieces of whole output channels (the outermost
// dimension of the stored tensor) of about piece_bytes() each. A worker then
// holds two pieces, not two tensors, however large the model, and one big
// tensor spreads over every worker; the pieces are disjoint, so the bytes do
// not depend on who writes which. A range of output channels is one
// contiguous range of both the source and the stored bytes (OIHW and
// [out][in] keep the output channel outermost), except for transposed convs
// (IOHW): their pieces stay within one group and are read as one strided run
// per input channel.
//
// A piece is about the size of this core's L2 (read at run time, see
// mpsbc::cache_geometry), within 256 KiB..4 MiB: it is read, transformed,
// hashed and written while it stays there. The ResNet-50-sized compile
// measured 0.067-0.069 s with 0.5, 1 and 2 MiB pieces against 0.080-0.087 s
// with 4 MiB and 0.085 s with 16 MiB (1 MiB L2; BENCHMARKS.md), and peak RSS
// falls with the piece: 8.4-9.4 MiB at 0.5-1 MiB against 21.5 at 4 MiB.
uint64_t piece_bytes() {
  static const uint64_t bytes = std::clamp<uint64_t>(mpsbc::cache_geometry().l2_bytes,
                                                     uint64_t{256} << 10, uint64_t{4} << 20);
  return bytes;
}

struct Piece {
  size_t tensor = 0;   // index into BundlePlan::tensors
  uint64_t first = 0;  // output channels [first, last)
  uint64_t last = 0;
  bool whole = false;  // the whole tensor: hashed by its worker
};

std::vector<Piece> make_pieces(const Manifest& manifest, const BundlePlan& plan) {
  std::vector<Piece> pieces;
  for (size_t k = 0; k < plan.tensors.size(); ++k) {
    const PlannedTensor& pt = plan.tensors[k];
    const ManifestTensor& t = manifest.layers[pt.layer].tensors[pt.tensor];
    const uint64_t rows = t.plan.stored_shape[0];
    const uint64_t per =
        std::max<uint64_t>(1, piece_bytes() / std::max<uint64_t>(1, t.size / rows));
    // A grouped conv stored dense is one piece: where a row's block lies
    // depends on its output channel's group.
    if (rows <= per || mpsb::is_grouped_to_dense(t.plan.transform)) {
      pieces.push_back({k, 0, rows, true});
      continue;
    }
    const uint64_t group =
        t.plan.transform == Transform::kConvTransposeToOHWIRotated ? t.plan.source_shape[1] : rows;
    for (uint64_t g = 0; g < rows; g += group) {
      for (uint64_t r = g; r < g + group; r += per) {
        pieces.push_back({k, r, std::min(r + per, g + group), false});
      }
    }
  }
  return pieces;
}

// The plan of output channels [first, last) of `t` on their own: the same
// transform over a tensor with fewer output channels (one group, for a
// transposed conv).
TensorPlan piece_plan(const ManifestTensor& t, const Piece& piece) {
  if (piece.whole) return t.plan;
  const uint64_t n = piece.last - piece.first;
  const auto& src = t.plan.source_shape;
  const auto& dst = t.plan.stored_shape;
  TensorPlan p = t.plan;
  switch (t.plan.transform) {
    case Transform::kIdentity:
      p.source_shape = {n * (t.plan.element_count() / dst[0])};
      p.stored_shape = p.source_shape;
      break;
    case Transform::kBroadcast:           // synthesized whole (a vector of slopes)
    case Transform::kConvGroupedToDense:  // always whole (make_pieces)
    case Transform::kConvTransposeGroupedToDenseRotated:
      break;
    case Transform::kConvOIHWToOHWI:
      p.source_shape[0] = p.stored_shape[0] = n;
      break;
    case Transform::kLinearFlattenToOHWC:
    case Transform::kNCHWToNHWC:
      p.source_shape[0] = p.stored_shape[0] = n;
      break;
    case Transform::kConvTransposeToOHWIRotated:
      p.source_shape = {dst[3], n, src[2], src[3]};
      p.stored_shape[0] = n;
      break;
  }
  return p;
}

// Shared state of the workers that stream tensors into the segment.
struct StreamJob {
  StreamJob(const Manifest& m, const BundlePlan& p, int out_fd, uint64_t seg_offset, Mutation mut)
      : manifest(m),
        plan(p),
        fd(out_fd),
        segment_offset(seg_offset),
        mutation(mut),
        checksums(p.tensors.size()),
        pieces(make_pieces(m, p)) {}

  const Manifest& manifest;
  const BundlePlan& plan;
  int fd;
  uint64_t segment_offset;
  Mutation mutation;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::vector<uint64_t> checksums;  // per planned tensor; each written by one worker
  std::vector<Piece> pieces;        // the work, in segment order; `next` indexes it

  struct Failure {
    size_t tensor;
    bool io;  // system error, as opposed to an input that changed
    std::string pointer_or_file;
    bool about_output;
    std::string text;
  };
  std::mutex mu;
  std::vector<Failure> failures;
  // Unless allow_non_finite: per planned tensor, what the scan of its bytes
  // found (guarded by mu).
  bool allow_non_finite = false;
  std::vector<NonFiniteCount> non_finite;
  // WriteOptions::progress; done_bytes is guarded by mu, which also keeps
  // the calls one at a time.
  std::function<void(uint64_t, uint64_t)> progress;
  uint64_t done_bytes = 0;

  void tensor_done(uint64_t bytes) {
    if (!progress) return;
    std::lock_guard<std::mutex> lock(mu);
    done_bytes += bytes;
    progress(done_bytes, plan.tensor_bytes);
  }

  void fail(Failure f) {
    stop = true;
    std::lock_guard<std::mutex> lock(mu);
    // Pieces of one tensor fail alike; one message per tensor.
    for (const Failure& g : failures) {
      if (g.tensor == f.tensor) return;
    }
    failures.push_back(std::move(f));
  }
};

// Work buffers start on a cache line: the layout transforms' AVX-512 paths
// store whole 64-byte lines only when the rows do (compiler/src/layout.cc),
// and a misaligned buffer halves the transposed conv's speed. Uninitialised,
// as make_unique_for_overwrite would give.
struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
using Buffer = std::unique_ptr<std::byte[], AlignedDelete>;

Buffer allocate(uint64_t size) {
  const size_t n = static_cast<size_t>(std::max<uint64_t>(size, 1));
  return Buffer(static_cast<std::byte*>(::operator new[](n, std::align_val_t{64})));
}

// A worker's open .bin: pieces of one tensor follow each other, so the file
// is opened (and its size checked) once per tensor and worker.
struct SourceFile {
  size_t tensor = SIZE_MAX;
  Fd fd;
};

// Reads piece `piece` of tensor `k` into `buf` in source order: for a
// transposed conv's piece [Ig][n][kH][kW], one run per input channel.
// Fails the job when the .bin cannot be read or no longer has the size
// validation saw.
bool read_piece(StreamJob& job, const Piece& piece, const ManifestTensor& t,
                const std::string& file, SourceFile& in, std::byte* buf) {
  const size_t k = piece.tensor;
  const uint64_t row_bytes = t.source_size / t.plan.stored_shape[0];
  // (offset, size) of each run and where it goes in `buf`.
  uint64_t runs = 1, run_bytes = (piece.last - piece.first) * row_bytes,
           first_offset = piece.first * row_bytes, run_stride = 0;
  if (t.plan.transform == Transform::kBroadcast) run_bytes = t.source_size;  // one element, whole
  if (t.plan.transform == Transform::kConvTransposeToOHWIRotated && !piece.whole) {
    const auto& src = t.plan.source_shape;
    const uint64_t og = src[1], ig = t.plan.stored_shape[3], g = piece.first / og;
    const uint64_t kernel_bytes = t.source_size / (src[0] * og);  // one [kH][kW]
    runs = ig;
    run_bytes = (piece.last - piece.first) * kernel_bytes;
    run_stride = og * kernel_bytes;
    first_offset = (g * ig * og + (piece.first - g * og)) * kernel_bytes;
  }
  if (!t.synthesized.empty()) {
    for (uint64_t r = 0; r < runs; ++r) {
      const auto* bytes = reinterpret_cast<const std::byte*>(t.synthesized.data());
      std::memcpy(buf + r * run_bytes, bytes + first_offset + r * run_stride,
                  static_cast<size_t>(run_bytes));
    }
    return true;
  }
  auto changed = [&] {
    job.fail({k, false, t.pointer, false,
              file + " changed since it was checked (replaced or rewritten); compile again"});
    return false;
  };
  if (in.tensor != k) {
    in.tensor = SIZE_MAX;
    struct stat st;
    std::string error;
    bool not_regular = false;
    in.fd = Fd(open_regular(t.path.c_str(), &st, &error, &not_regular));
    if (in.fd.get() < 0) {
      // A .bin that became a FIFO or a folder since it was checked.
      if (not_regular) return changed();
      job.fail({k, true, t.pointer, false, "cannot open " + file + ": " + error});
      return false;
    }
    if (uint64_t(st.st_size) != t.source_size) {
      job.fail({k, false, t.pointer, false,
                file + " changed while compiling: expected " + std::to_string(t.source_size) +
                    " bytes, found " + std::to_string(uint64_t(st.st_size))});
      return false;
    }
    if (t.identity.recorded && !(FileIdentity::of(st) == t.identity)) return changed();
    in.tensor = k;
  }
  for (uint64_t r = 0; r < runs; ++r) {
    const uint64_t offset = first_offset + r * run_stride;
    const ssize_t got =
        pread_all(in.fd.get(), buf + r * run_bytes, static_cast<size_t>(run_bytes), offset);
    if (got < 0) {
      job.fail({k, true, t.pointer, false, "cannot read " + file + ": " + errno_text(errno)});
      return false;
    }
    if (uint64_t(got) != run_bytes) {
      job.fail({k, false, t.pointer, false,
                file + " changed while compiling: read " + std::to_string(offset + uint64_t(got)) +
                    " of " + std::to_string(t.source_size) + " bytes"});
      return false;
    }
  }
  if (t.identity.recorded) {
    // Rewritten while this piece was read: its bytes may be a mix.
    struct stat st;
    if (::fstat(in.fd.get(), &st) != 0) {
      job.fail({k, true, t.pointer, false, "cannot stat " + file + ": " + errno_text(errno)});
      return false;
    }
    if (!(FileIdentity::of(st) == t.identity)) return changed();
  }
  if (!job.allow_non_finite) {
    // The bytes that land are the bytes scanned.
    const uint64_t elem = mpsb::dtype_size(t.source_dtype);
    NonFiniteCount nf;
    for (uint64_t r = 0; r < runs; ++r) {
      count_non_finite(buf + r * run_bytes, t.source_dtype, run_bytes / elem,
                       (first_offset + r * run_stride) / elem, &nf);
    }
    if (nf.count() > 0) {
      std::lock_guard<std::mutex> lock(job.mu);
      job.non_finite[k].add(nf);
    }
  }
  return true;
}

// --fold-batchnorm: row r of the stored tensor (output channel r) becomes
// row * scale[r] + shift[r] (shift empty for weights). `data` holds rows
// [first, last).
void fold_rows(const ManifestTensor& t, uint64_t first, uint64_t last, float* data) {
  const uint64_t rows = t.fold_scale.size();
  const uint64_t per = t.plan.element_count() / rows;
  for (uint64_t r = first; r < last; ++r) {
    const float scale = t.fold_scale[r];
    const float shift = t.fold_shift.empty() ? 0.0f : t.fold_shift[r];
    float* row = data + (r - first) * per;
    for (uint64_t i = 0; i < per; ++i) row[i] = row[i] * scale + shift;
  }
}

// Test-only faults (fault_injection.h): undo part of a correct
// transform in `stored` so that --check must fail.
void mutate(Mutation m, const TensorPlan& plan, const std::byte* src, std::byte* stored,
            size_t elem) {
  if (m == Mutation::kNoFlattenPermute && plan.transform == Transform::kLinearFlattenToOHWC) {
    std::memcpy(stored, src, plan.element_count() * elem);
  }
  if (m == Mutation::kWrongBlock && mpsb::is_grouped_to_dense(plan.transform)) {
    // Both dense forms are [O][kH][kW][I] with output channel o's kernel at
    // input channels [o / og * ig, +ig): move each to the next group's.
    const auto& s = plan.stored_shape;
    const uint64_t out = s[0], sp = s[1] * s[2], in = s[3];
    const bool transposed = plan.transform == Transform::kConvTransposeGroupedToDenseRotated;
    const uint64_t groups = transposed ? out / plan.source_shape[1] : in / plan.source_shape[1];
    const uint64_t og = out / groups, ig = in / groups;
    std::vector<std::byte> block(ig * elem);
    for (uint64_t o = 0; o < out; ++o) {
      const uint64_t from = o / og * ig, to = (o / og + 1) % groups * ig;
      for (uint64_t k = 0; k < sp; ++k) {
        std::byte* row = stored + (o * sp + k) * in * elem;
        std::memcpy(block.data(), row + from * elem, ig * elem);
        std::memset(row + from * elem, 0, ig * elem);
        std::memcpy(row + to * elem, block.data(), ig * elem);
      }
    }
  }
  if (m == Mutation::kNoRotation && plan.transform == Transform::kConvTransposeToOHWIRotated) {
    // Flip the kernel back in both spatial dimensions: [O][kH][kW][I/g].
    const auto& s = plan.stored_shape;
    const uint64_t kh = s[1], kw = s[2], row = s[3] * elem;
    std::vector<std::byte> tmp(row);
    for (uint64_t o = 0; o < s[0]; ++o) {
      std::byte* base = stored + o * kh * kw * row;
      for (uint64_t a = 0; a < kh * kw / 2; ++a) {
        std::byte* x = base + a * row;
        std::byte* y = base + (kh * kw - 1 - a) * row;
        std::memcpy(tmp.data(), x, row);
        std::memcpy(x, y, row);
        std::memcpy(y, tmp.data(), row);
      }
    }
  }
}

// Whether a tensor goes through float32 on its way to the bundle: a dtype
// change (precision, or a float16/bfloat16 source), or folding into weights
// not stored as float32.
bool needs_conversion(const ManifestTensor& t) {
  return t.dtype != t.source_dtype || (!t.fold_scale.empty() && t.dtype != mpsb::DType::kFloat32);
}

// Stores `n` floats (output channels [piece.first, piece.last) of `t`) in
// t.dtype: float32 as is, float16 rounded to nearest even (overflow was
// refused or allowed to clamp before writing began), uint8 with the layer's
// ranges or lookup table, which measure_precision() fitted to the whole
// tensor.
void encode(const ManifestLayer& layer, const ManifestTensor& t, const Piece& piece,
            const float* in, size_t n, std::byte* out) {
  switch (t.dtype) {
    case mpsb::DType::kFloat32:
      std::memcpy(out, in, n * sizeof(float));
      return;
    case mpsb::DType::kFloat16:
      floats_to_half(in, reinterpret_cast<uint16_t*>(out), n, /*clamp_overflow=*/true);
      return;
    case mpsb::DType::kUInt8: {
      const ManifestTensor& table = layer.tensors.back();
      auto* q = reinterpret_cast<uint8_t*>(out);
      if (table.role == mpsb::TensorRole::kQuantRanges) {
        const size_t rows = static_cast<size_t>(piece.last - piece.first);
        quantize_linear_with(in, rows, n / rows, table.synthesized.data() + 2 * piece.first, q);
      } else {
        lut_codes(in, n, table.synthesized.data(), q);
      }
      return;
    }
    case mpsb::DType::kBFloat16:
      return;  // never a stored type: plan_precision() widens bfloat16
  }
}

// One worker: takes the next piece, reads it from its .bin, transforms it
// and writes it at its planned offset; hashes tensors that are one piece.
// Holds at most one source and one stored buffer, each as large as the
// largest piece it has handled (about piece_bytes(), or one output channel).
void stream_tensors(StreamJob& job, const std::string& output) {
  Buffer src, dst;
  uint64_t src_cap = 0, dst_cap = 0;
  Buffer floats;  // the conversion path's two float buffers
  uint64_t floats_cap = 0;
  SourceFile in;
  for (;;) {
    if (job.stop) return;
    const size_t next = job.next.fetch_add(1);
    if (next >= job.pieces.size()) return;
    const Piece& piece = job.pieces[next];
    const size_t k = piece.tensor;
    const PlannedTensor& pt = job.plan.tensors[k];
    const ManifestTensor& t = job.manifest.layers[pt.layer].tensors[pt.tensor];
    const std::string file = "\"" + t.path_text + "\"";
    const uint64_t rows = piece.last - piece.first;
    const uint64_t row_bytes = t.size / t.plan.stored_shape[0];
    const uint64_t size = rows * row_bytes;
    const uint64_t source_bytes = t.plan.transform == Transform::kBroadcast
                                      ? t.source_size
                                      : rows * (t.source_size / t.plan.stored_shape[0]);

    if (source_bytes > SIZE_MAX || size > SIZE_MAX) {
      job.fail({k, true, t.pointer, false, file + ": too large for this machine's address space"});
      return;
    }
    if (src_cap < source_bytes) {
      src.reset();
      src = allocate(source_bytes);
      src_cap = source_bytes;
    }
    if (!read_piece(job, piece, t, file, in, src.get())) return;

    const TensorPlan plan = piece_plan(t, piece);
    const std::byte* stored = src.get();
    if (needs_conversion(t)) {
      // Through float32: widen, transform, fold, then round or quantize to
      // the stored type, exactly as measure_precision() did.
      const uint64_t n = plan.element_count();
      // Two halves, each starting on a cache line.
      const uint64_t half = (n * sizeof(float) + 63) / 64 * 64;
      if (floats_cap < 2 * half) {
        floats.reset();
        floats = allocate(2 * half);
        floats_cap = 2 * half;
      }
      float* a = reinterpret_cast<float*>(floats.get());
      float* b = reinterpret_cast<float*>(floats.get() + half);
      to_float(t.source_dtype, src.get(), a,
               static_cast<size_t>(source_bytes / mpsb::dtype_size(t.source_dtype)));
      if (t.plan.transform != Transform::kIdentity) {
        apply(plan, a, b, sizeof(float));
        mutate(job.mutation, plan, reinterpret_cast<const std::byte*>(a),
               reinterpret_cast<std::byte*>(b), sizeof(float));
        std::swap(a, b);
      }
      if (!t.fold_scale.empty()) fold_rows(t, piece.first, piece.last, a);
      if (dst_cap < size) {
        dst.reset();
        dst = allocate(size);
        dst_cap = size;
      }
      encode(job.manifest.layers[pt.layer], t, piece, a, static_cast<size_t>(n), dst.get());
      stored = dst.get();
    } else {
      std::byte* out = src.get();
      if (t.plan.transform != Transform::kIdentity) {
        if (dst_cap < size) {
          dst.reset();
          dst = allocate(size);
          dst_cap = size;
        }
        apply(plan, src.get(), dst.get(), mpsb::dtype_size(t.dtype));
        mutate(job.mutation, plan, src.get(), dst.get(), mpsb::dtype_size(t.dtype));
        out = dst.get();
      }
      if (!t.fold_scale.empty()) {
        // Batch-norm folding on float32 stored as float32; the output
        // channel is the outermost stored dimension (OHWI and vectors).
        fold_rows(t, piece.first, piece.last, reinterpret_cast<float*>(out));
      }
      stored = out;
    }
    if (piece.whole) job.checksums[k] = XXH3_64bits(stored, static_cast<size_t>(size));
    if (!pwrite_all(job.fd, stored, static_cast<size_t>(size),
                    job.segment_offset + pt.offset + piece.first * row_bytes)) {
      job.fail({k, true, output, true, "cannot write: " + errno_text(errno)});
      return;
    }
    job.tensor_done(size);
  }
}

// Reads the segment back in order (from the page cache, in practice) and
// hashes it as it is on disk, padding included: the workers finish out of
// order, so their hashes cannot be chained. The same pass hashes each tensor
// that was written in several pieces, which no worker saw whole. Returns
// the segment's hash, or nullopt with *error set.
std::optional<uint64_t> hash_segment(StreamJob& job, uint64_t segment_size, std::string* error) {
  std::vector<size_t> split;  // tensors written in pieces, in segment order
  for (const Piece& piece : job.pieces) {
    if (!piece.whole && piece.first == 0) split.push_back(piece.tensor);
  }
  std::sort(split.begin(), split.end(), [&](size_t a, size_t b) {
    return job.plan.tensors[a].offset < job.plan.tensors[b].offset;
  });
  XXH3_state_t* segment = XXH3_createState();
  XXH3_state_t* tensor = XXH3_createState();
  const std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> free_segment(segment,
                                                                              XXH3_freeState);
  const std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> free_tensor(tensor,
                                                                             XXH3_freeState);
  if (!segment || !tensor) {
    *error = "out of memory";
    return std::nullopt;
  }
  XXH3_64bits_reset(segment);
  constexpr size_t kChunk = size_t{1} << 20;
  const Buffer buf = allocate(kChunk);
  size_t next = 0;  // the first split tensor not hashed to its end yet
  for (uint64_t pos = 0; pos < segment_size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, segment_size - pos));
    const ssize_t got = pread_all(job.fd, buf.get(), want, job.segment_offset + pos);
    if (got < 0 || size_t(got) != want) {
      *error = got < 0 ? "cannot read back the temporary file: " + errno_text(errno)
                       : std::string("the temporary file shrank while writing");
      return std::nullopt;
    }
    XXH3_64bits_update(segment, buf.get(), want);
    const uint64_t end = pos + want;
    for (; next < split.size(); ++next) {
      const PlannedTensor& pt = job.plan.tensors[split[next]];
      if (pt.offset >= end) break;  // starts in a later chunk
      if (pt.offset >= pos) XXH3_64bits_reset(tensor);
      const uint64_t from = std::max(pt.offset, pos), to = std::min(pt.offset + pt.size, end);
      XXH3_64bits_update(tensor, buf.get() + (from - pos), static_cast<size_t>(to - from));
      if (pt.offset + pt.size > end) break;  // goes on in the next chunk
      job.checksums[split[next]] = XXH3_64bits_digest(tensor);
    }
    pos = end;
  }
  return XXH3_64bits_digest(segment);
}

}  // namespace

size_t remove_stale_temp_files(const std::string& output_path, std::chrono::seconds max_age) {
  const std::filesystem::path output(output_path);
  std::filesystem::path folder = output.parent_path();
  if (folder.empty()) folder = ".";
  const std::string prefix = temp_prefix(output);
  const auto now = std::chrono::system_clock::now();
  size_t removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = temp_owner(std::string_view(name).substr(prefix.size()));
    if (pid < 0) continue;
    struct stat st;
    // lstat: a symbolic link with that name is not ours to judge.
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const auto modified = std::chrono::system_clock::from_time_t(st.st_mtime);
    if (process_alive(pid) && now - modified < max_age) continue;
    if (::unlink(it->path().c_str()) == 0) ++removed;
  }
  return removed;
}

bool write_bundle(const Manifest& manifest, const BundlePlan& plan, Metadata metadata,
                  const std::string& output_path, const WriteOptions& options, Diagnostics& diag,
                  bool* io_failure) {
  *io_failure = true;
  auto output_error = [&](const std::string& text) {
    diag.error_in(output_path, text);
    return false;
  };

  const std::filesystem::path output(output_path);
  // Keep the mode of a bundle being replaced; a new one gets rw-r--r--.
  mode_t mode = 0644;
  struct stat old_st;
  if (::stat(output_path.c_str(), &old_st) == 0) mode = old_st.st_mode & 07777;

  // Leftovers of killed compiles into this output would otherwise pile up
  // (each can be as large as the bundle).
  remove_stale_temp_files(output_path);
  TempFile tmp;
  std::string error;
  if (!tmp.create(output, &error)) return output_error(error);
  const int fd = tmp.fd();

  // Sizing the file first makes every padding byte a zero (a hole) and, where
  // the file system can reserve space, turns a full disk into an early error.
  if (::ftruncate(fd, static_cast<off_t>(metadata.file_size)) != 0) {
    return output_error("cannot size the temporary file to " + std::to_string(metadata.file_size) +
                        " bytes: " + errno_text(errno));
  }
#ifdef __linux__
  if (const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(metadata.file_size));
      err == ENOSPC || err == EFBIG || err == EDQUOT) {
    return output_error("cannot reserve " + std::to_string(metadata.file_size) +
                        " bytes: " + errno_text(err));
  }
#endif

  StreamJob job(manifest, plan, fd, metadata.segment_offset, options.mutation);
  job.progress = options.progress;
  job.allow_non_finite = options.allow_non_finite;
  job.non_finite.resize(plan.tensors.size());
  if (options.before_stream) options.before_stream();
  {
    unsigned n = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
    n = static_cast<unsigned>(std::min<size_t>(n, std::max<size_t>(job.pieces.size(), 1)));
    std::vector<std::thread> workers;
    for (unsigned i = 1; i < n; ++i) {
      try {
        workers.emplace_back([&] { stream_tensors(job, output_path); });
      } catch (const std::system_error&) {
        break;  // fewer threads, same bytes: the calling thread works too
      }
    }
    stream_tensors(job, output_path);
    for (auto& w : workers) w.join();
  }
  for (size_t k = 0; k < plan.tensors.size(); ++k) {
    if (job.non_finite[k].count() == 0) continue;
    const ManifestTensor& t =
        manifest.layers[plan.tensors[k].layer].tensors[plan.tensors[k].tensor];
    job.fail({k, false, t.pointer, false,
              describe_file(t) + ": " + non_finite_text(job.non_finite[k]) +
                  "; --allow-non-finite accepts them"});
  }
  if (!job.failures.empty()) {
    // Workers fail in any order; report in segment order so runs agree.
    std::sort(job.failures.begin(), job.failures.end(),
              [](const auto& a, const auto& b) { return a.tensor < b.tensor; });
    *io_failure = false;
    for (const auto& f : job.failures) {
      if (f.about_output) {
        diag.error_in(f.pointer_or_file, f.text);
      } else {
        diag.error(f.pointer_or_file, f.text);
      }
      *io_failure = *io_failure || f.io;
    }
    return false;
  }

  const std::optional<uint64_t> segment_checksum = hash_segment(job, plan.segment_size, &error);
  if (!segment_checksum) return output_error(error);

  fb::Bundle* root = fb::GetMutableSizePrefixedBundle(metadata.bytes.data());
  if (!root->mutate_segment_checksum(*segment_checksum)) {
    return output_error("internal error: segment_checksum missing from the metadata");
  }
  {
    size_t k = 0;
    std::vector<size_t> first_tensor(manifest.layers.size());
    for (size_t li = 0; li < manifest.layers.size(); ++li) {
      first_tensor[li] = k;
      k += manifest.layers[li].tensors.size();
    }
    auto* layers = root->mutable_layers();
    for (size_t p = 0; p < plan.sorted_layers.size(); ++p) {
      const size_t li = plan.sorted_layers[p];
      auto* tensors =
          layers->GetMutableObject(static_cast<flatbuffers::uoffset_t>(p))->mutable_tensors();
      for (size_t ti = 0; ti < manifest.layers[li].tensors.size(); ++ti) {
        if (!tensors->GetMutableObject(static_cast<flatbuffers::uoffset_t>(ti))
                 ->mutate_checksum(job.checksums[first_tensor[li] + ti])) {
          return output_error("internal error: tensor checksum missing from the metadata");
        }
      }
    }
  }

  // metadata_checksum is still 0 here, which is how the format defines the
  // bytes it covers.
  if (!root->mutate_metadata_checksum(XXH3_64bits(metadata.bytes.data(), metadata.bytes.size()))) {
    return output_error("internal error: metadata_checksum missing from the metadata");
  }

  if (!pwrite_all(fd, metadata.bytes.data(), metadata.bytes.size(), 0)) {
    return output_error("cannot write: " + errno_text(errno));
  }
  if (::fchmod(fd, mode) != 0)
    return output_error("cannot set the file mode: " + errno_text(errno));
  if (::fsync(fd) != 0) return output_error("cannot sync: " + errno_text(errno));
  if (!tmp.close()) return output_error("cannot close: " + errno_text(errno));
  if (options.before_commit && !options.before_commit(tmp.path())) {
    *io_failure = false;
    return false;
  }
  if (::rename(tmp.path().c_str(), output_path.c_str()) != 0) {
    return output_error("cannot rename " + tmp.path() + " over it: " + errno_text(errno));
  }
  tmp.commit();
  // The rename is durable only once the folder's entry is synced.
  std::filesystem::path folder = output.parent_path();
  if (folder.empty()) folder = ".";
  // The bundle is complete and in place by now, so a failure here cannot be
  // undone; it only means a power loss might still lose the new name.
  Fd dir(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0 || ::fsync(dir.get()) != 0) {
    diag.warning_in(output_path, "written, but cannot sync the folder " + folder.string() + ": " +
                                     errno_text(errno));
  }
  return true;
}

}  // namespace mpsbc
