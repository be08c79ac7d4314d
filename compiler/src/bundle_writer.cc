#include "bundle_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "checked_math.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsbc/compile.h"

#define XXH_INLINE_ALL
#include "xxhash.h"

namespace mpsbc {
namespace {

namespace fb = mpsb::fb;

// The public enums mirror the schema's value for value (the runtime
// static_asserts it), so a cast is the conversion.
template <typename To, typename From>
To as_fb(From v) {
  return static_cast<To>(static_cast<uint8_t>(v));
}

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
    std::string pattern = (folder / ("." + output.filename().string() + ".tmp-XXXXXX")).string();
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

// Shared state of the workers that stream tensors into the segment.
struct StreamJob {
  StreamJob(const Manifest& m, const BundlePlan& p, int out_fd, uint64_t seg_offset,
            CompileOptions::Mutation mut)
      : manifest(m),
        plan(p),
        fd(out_fd),
        segment_offset(seg_offset),
        mutation(mut),
        checksums(p.tensors.size()) {}

  const Manifest& manifest;
  const BundlePlan& plan;
  int fd;
  uint64_t segment_offset;
  CompileOptions::Mutation mutation;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::vector<uint64_t> checksums;  // per planned tensor; each written by one worker

  struct Failure {
    size_t tensor;
    bool io;  // system error, as opposed to an input that changed
    std::string pointer_or_file;
    bool about_output;
    std::string text;
  };
  std::mutex mu;
  std::vector<Failure> failures;

  void fail(Failure f) {
    stop = true;
    std::lock_guard<std::mutex> lock(mu);
    failures.push_back(std::move(f));
  }
};

std::unique_ptr<std::byte[]> allocate(uint64_t size) {
  return std::make_unique_for_overwrite<std::byte[]>(
      static_cast<size_t>(std::max<uint64_t>(size, 1)));
}

// Reads tensor `k`'s .bin into `buf`, failing the job when it cannot be read
// or no longer has the size validation saw.
bool read_source(StreamJob& job, size_t k, const ManifestTensor& t, const std::string& file,
                 std::byte* buf) {
  Fd in(::open(t.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    job.fail({k, true, t.pointer, false, "cannot open " + file + ": " + errno_text(errno)});
    return false;
  }
  struct stat st;
  if (::fstat(in.get(), &st) != 0) {
    job.fail({k, true, t.pointer, false, "cannot stat " + file + ": " + errno_text(errno)});
    return false;
  }
  if (uint64_t(st.st_size) != t.size) {
    job.fail({k, false, t.pointer, false,
              file + " changed while compiling: expected " + std::to_string(t.size) +
                  " bytes, found " + std::to_string(uint64_t(st.st_size))});
    return false;
  }
  const ssize_t got = pread_all(in.get(), buf, static_cast<size_t>(t.size), 0);
  if (got < 0) {
    job.fail({k, true, t.pointer, false, "cannot read " + file + ": " + errno_text(errno)});
    return false;
  }
  if (uint64_t(got) != t.size) {
    job.fail({k, false, t.pointer, false,
              file + " changed while compiling: read " + std::to_string(got) + " of " +
                  std::to_string(t.size) + " bytes"});
    return false;
  }

  return true;
}

// --fold-batchnorm: row r of the stored tensor (output channel r) becomes
// row * scale[r] + shift[r] (shift empty for weights).
void fold_rows(const ManifestTensor& t, float* data) {
  const uint64_t rows = t.fold_scale.size();
  const uint64_t per = t.size / sizeof(float) / rows;
  for (uint64_t r = 0; r < rows; ++r) {
    const float scale = t.fold_scale[r];
    const float shift = t.fold_shift.empty() ? 0.0f : t.fold_shift[r];
    for (uint64_t i = 0; i < per; ++i) data[r * per + i] = data[r * per + i] * scale + shift;
  }
}

// Test-only faults (CompileOptions::Mutation): undo part of a correct
// transform in `stored` so that --check must fail.
void mutate(CompileOptions::Mutation m, const TensorPlan& plan, const std::byte* src,
            std::byte* stored, size_t elem) {
  using Mutation = CompileOptions::Mutation;
  if (m == Mutation::kNoFlattenPermute && plan.transform == Transform::kLinearFlattenToOHWC) {
    std::memcpy(stored, src, plan.element_count() * elem);
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

// One worker: takes the next tensor, reads its .bin, transforms, hashes and
// writes it at its planned offset. Holds at most one source and one stored
// buffer, each as large as the largest tensor it has handled.
void stream_tensors(StreamJob& job, const std::string& output) {
  std::unique_ptr<std::byte[]> src, dst;
  uint64_t src_cap = 0, dst_cap = 0;
  for (;;) {
    if (job.stop) return;
    const size_t k = job.next.fetch_add(1);
    if (k >= job.plan.tensors.size()) return;
    const PlannedTensor& pt = job.plan.tensors[k];
    const ManifestTensor& t = job.manifest.layers[pt.layer].tensors[pt.tensor];
    const std::string file = "\"" + t.path_text + "\"";

    if (t.size > SIZE_MAX) {
      job.fail({k, true, t.pointer, false, file + ": too large for this machine's address space"});
      return;
    }
    if (src_cap < t.size) {
      src.reset();
      src = allocate(t.size);
      src_cap = t.size;
    }
    if (!t.synthesized.empty()) {
      std::memcpy(src.get(), t.synthesized.data(), static_cast<size_t>(t.size));
    } else if (!read_source(job, k, t, file, src.get())) {
      return;
    }

    const std::byte* stored = src.get();
    if (t.plan.transform != Transform::kIdentity) {
      if (dst_cap < t.size) {
        dst.reset();
        dst = allocate(t.size);
        dst_cap = t.size;
      }
      apply(t.plan, src.get(), dst.get(), mpsb::dtype_size(t.dtype));
      stored = dst.get();
      mutate(job.mutation, t.plan, src.get(), dst.get(), mpsb::dtype_size(t.dtype));
    }
    if (!t.fold_scale.empty()) {
      // Batch-norm folding, on float32 data whose outermost stored
      // dimension is the output channel (OHWI kernels and bias vectors).
      std::byte* rows = stored == src.get() ? src.get() : dst.get();
      fold_rows(t, reinterpret_cast<float*>(rows));
    }
    job.checksums[k] = XXH3_64bits(stored, static_cast<size_t>(t.size));
    if (!pwrite_all(job.fd, stored, static_cast<size_t>(t.size), job.segment_offset + pt.offset)) {
      job.fail({k, true, output, true, "cannot write: " + errno_text(errno)});
      return;
    }
  }
}

}  // namespace

bool build_metadata(const Manifest& manifest, const BundlePlan& plan, Metadata* out,
                    Diagnostics& diag) {
  flatbuffers::FlatBufferBuilder fbb(16384);
  // Every scalar is stored, even at its default, so the checksums and the
  // segment offset can be patched in place and a reader always finds the
  // metadata_checksum bytes to zero.
  fbb.ForceDefaults(true);

  std::vector<size_t> first_tensor(manifest.layers.size());
  {
    size_t k = 0;
    for (size_t li = 0; li < manifest.layers.size(); ++li) {
      first_tensor[li] = k;
      k += manifest.layers[li].tensors.size();
    }
  }

  std::vector<flatbuffers::Offset<fb::Layer>> layers;
  layers.reserve(plan.sorted_layers.size());
  for (size_t li : plan.sorted_layers) {
    const ManifestLayer& l = manifest.layers[li];
    std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
    for (size_t ti = 0; ti < l.tensors.size(); ++ti) {
      const ManifestTensor& t = l.tensors[ti];
      const PlannedTensor& pt = plan.tensors[first_tensor[li] + ti];
      auto shape = fbb.CreateVector(t.plan.stored_shape);
      auto source_shape = fbb.CreateVector(t.plan.source_shape);
      tensors.push_back(fb::CreateTensor(
          fbb, as_fb<fb::TensorRole>(t.role), as_fb<fb::DType>(t.dtype),
          as_fb<fb::TensorLayout>(t.plan.stored_layout), shape, as_fb<fb::DType>(t.source_dtype),
          as_fb<fb::TensorLayout>(t.plan.source_layout), source_shape,
          as_fb<fb::Transform>(t.plan.transform), pt.offset, pt.size,
          /*checksum=*/0));
    }
    auto tensor_vec = fbb.CreateVector(tensors);
    flatbuffers::Offset<fb::ConvParams> conv = 0;
    flatbuffers::Offset<fb::LinearParams> linear = 0;
    flatbuffers::Offset<fb::NormParams> norm = 0;
    switch (l.kind) {
      case mpsb::LayerKind::kConv2d:
      case mpsb::LayerKind::kConvTranspose2d: {
        const auto& c = l.conv;
        conv = fb::CreateConvParams(fbb, c.in_channels, c.out_channels, c.kernel_h, c.kernel_w,
                                    c.stride_h, c.stride_w, c.padding_h, c.padding_w, c.dilation_h,
                                    c.dilation_w, c.groups, c.output_padding_h, c.output_padding_w);
        break;
      }
      case mpsb::LayerKind::kLinear: {
        flatbuffers::Offset<flatbuffers::Vector<uint32_t>> input_shape = 0;
        if (l.linear.flattened()) {
          const std::vector<uint32_t> chw = {l.linear.input_c, l.linear.input_h, l.linear.input_w};
          input_shape = fbb.CreateVector(chw);
        }
        linear =
            fb::CreateLinearParams(fbb, l.linear.in_features, l.linear.out_features, input_shape);
        break;
      }
      case mpsb::LayerKind::kBatchNorm2d:
      case mpsb::LayerKind::kInstanceNorm2d:
        norm = fb::CreateNormParams(fbb, l.norm.num_features, l.norm.eps);
        break;
    }
    auto name = fbb.CreateString(l.name);
    layers.push_back(fb::CreateLayer(fbb, name, l.index, as_fb<fb::LayerKind>(l.kind), conv, linear,
                                     norm, as_fb<fb::Activation>(l.activation), l.activation_alpha,
                                     fb::Quantization::None, tensor_vec));
  }
  // Already in key order (plan.sorted_layers); CreateVectorOfSortedTables
  // would sort again with the same comparison.
  auto layer_vec = fbb.CreateVector(layers);

  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::KeyValue>>> metadata = 0;
  if (manifest.has_metadata) {
    std::vector<flatbuffers::Offset<fb::KeyValue>> kvs;
    for (const auto& [key, value] : manifest.metadata) {
      auto k = fbb.CreateString(key);
      auto v = fbb.CreateString(value);
      kvs.push_back(fb::CreateKeyValue(fbb, k, v));
    }
    metadata = fbb.CreateVector(kvs);
  }
  flatbuffers::Offset<flatbuffers::String> name = 0;
  if (manifest.name) name = fbb.CreateString(*manifest.name);
  auto producer = fbb.CreateString(producer_string());

  auto root = fb::CreateBundle(fbb, /*format_version=*/1, producer, name, metadata,
                               plan.segment_alignment, plan.tensor_alignment,
                               /*segment_offset=*/0, plan.segment_size, layer_vec,
                               /*segment_checksum=*/0, /*metadata_checksum=*/0);
  fbb.FinishSizePrefixed(root, fb::BundleIdentifier());

  out->bytes.assign(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  auto segment_offset = checked_align_up(out->bytes.size(), plan.segment_alignment);
  auto file_size = segment_offset ? checked_add(*segment_offset, plan.segment_size) : std::nullopt;
  if (!file_size) {
    diag.error("", "the bundle would exceed 2^64 bytes");
    return false;
  }
  out->segment_offset = *segment_offset;
  out->file_size = *file_size;
  if (!fb::GetMutableSizePrefixedBundle(out->bytes.data())
           ->mutate_segment_offset(*segment_offset)) {
    diag.error("", "internal error: segment_offset missing from the metadata");
    return false;
  }
  return true;
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
  {
    unsigned n = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
    n = static_cast<unsigned>(std::min<size_t>(n, std::max<size_t>(plan.tensors.size(), 1)));
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

  fb::Bundle* root = fb::GetMutableSizePrefixedBundle(metadata.bytes.data());
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

  // Hash the segment as it is on disk, padding included, in order; the
  // workers finish out of order, so their hashes cannot be chained.
  {
    XXH3_state_t* state = XXH3_createState();
    if (!state) return output_error("out of memory");
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> guard(state, XXH3_freeState);
    XXH3_64bits_reset(state);
    constexpr size_t kChunk = size_t{1} << 20;
    auto buf = allocate(kChunk);
    for (uint64_t pos = 0; pos < plan.segment_size;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, plan.segment_size - pos));
      const ssize_t got = pread_all(fd, buf.get(), want, metadata.segment_offset + pos);
      if (got < 0) return output_error("cannot read back the temporary file: " + errno_text(errno));
      if (size_t(got) != want) return output_error("the temporary file shrank while writing");
      XXH3_64bits_update(state, buf.get(), want);
      pos += want;
    }
    if (!root->mutate_segment_checksum(XXH3_64bits_digest(state))) {
      return output_error("internal error: segment_checksum missing from the metadata");
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
