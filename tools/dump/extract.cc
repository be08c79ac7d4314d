// --extract LAYER.ROLE: one tensor, given back in its PyTorch layout and
// dtype, written atomically (or to standard output).
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "dump_internal.h"
#include "mpsbc/layout.h"
#include "mpsbc/precision.h"
#include "mpsbc/reference.h"

namespace mpsb::dump::detail {
namespace {

std::optional<TensorRole> parse_role(std::string_view name) {
  // Role names come from the runtime's to_string, the one list of them.
  for (size_t r = 0; r < kTensorRoleCount; ++r) {
    const auto role = static_cast<TensorRole>(r);
    if (to_string(role) == name) return role;
  }
  return std::nullopt;
}

// The stored elements converted to the source dtype, still in stored order.
// Only widening conversions are possible: they give back the stored values
// exactly, which equal the source values only when nothing was rounded.
// The dtype --extract writes when --as does not say: the source's when the
// stored values convert back to it exactly (same type, or float16/bfloat16
// widened to float32), otherwise the stored type (float16 rounded from
// float32). uint8 codes have no default: they mean nothing without their
// ranges or table.
std::optional<DType> default_extract_dtype(const Tensor& t) {
  if (t.dtype() == DType::kUInt8) return std::nullopt;
  if (t.dtype() == DType::kFloat32) return t.source_dtype();
  return t.dtype();
}

// The tensor's values in stored order as `want`: uint8 dequantized the way
// MPS does (through the layer's ranges or lookup table) or left as codes;
// floats widened exactly or rounded to nearest even.
bool stored_values_as(const Layer& layer, const Tensor& t, DType want, std::vector<std::byte>* out,
                      std::string* why) {
  const auto bytes = t.bytes();
  if (want == t.dtype()) {
    out->assign(bytes.begin(), bytes.end());
    return true;
  }
  const uint64_t n = t.element_count();
  std::vector<float> values(static_cast<size_t>(n));
  if (t.dtype() == DType::kUInt8) {
    auto decoded = mpsbc::decode_weights(layer);
    if (!decoded.ok() || t.role() != TensorRole::kWeight) {
      *why = "uint8 values can only be dequantized for a layer's weight";
      return false;
    }
    values = std::move(decoded).value();
  } else {
    mpsbc::to_float(t.dtype(), bytes.data(), values.data(), values.size());
  }
  out->resize(static_cast<size_t>(n * dtype_size(want)));
  switch (want) {
    case DType::kFloat32:
      std::memcpy(out->data(), values.data(), out->size());
      return true;
    case DType::kFloat16:
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = mpsbc::float_to_half(values[i]);
        std::memcpy(out->data() + 2 * i, &h, 2);
      }
      return true;
    case DType::kBFloat16:
      for (size_t i = 0; i < values.size(); ++i) {
        // Exact for values that were bfloat16 to begin with (the only ones
        // a bundle widens); round to nearest even otherwise.
        uint32_t b;
        std::memcpy(&b, &values[i], 4);
        const uint16_t h = uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
        std::memcpy(out->data() + 2 * i, &h, 2);
      }
      return true;
    case DType::kUInt8:
      break;
  }
  *why = fmt::format("{} values cannot be written as {}", to_string(t.dtype()), to_string(want));
  return false;
}

bool write_all(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Writes `data` to `path` through a temporary file in the same folder, then
// renames it over `path`: readers see the old file or the whole new one,
// never a partial tensor, and a failure leaves any old file untouched.
bool write_atomically(const std::string& path, std::span<const std::byte> data, std::string* why) {
  const std::filesystem::path target(path);
  const std::filesystem::path dir =
      target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  // O_EXCL with a per-process, per-call name instead of mkstemp: mkstemp
  // makes the file 0600, and fixing that needs umask(), which is process-wide
  // and racy. open() with 0666 applies the umask like any other new file.
  static std::atomic<uint64_t> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = (dir / fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(),
                             counter.fetch_add(1)))
              .string();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    *why =
        fmt::format("cannot create a temporary file in {}: {}", dir.string(), std::strerror(errno));
    return false;
  }
  bool ok = write_all(fd, data.data(), data.size()) && ::fsync(fd) == 0;
  int saved = errno;
  if (::close(fd) != 0 && ok) ok = false, saved = errno;
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false, saved = errno;
  if (!ok) {
    ::unlink(tmp.c_str());
    *why = fmt::format("cannot write {}: {}", path, std::strerror(saved));
    return false;
  }
  // Make the rename itself durable; failure here loses nothing already written.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace

std::string role_names() {
  std::vector<std::string_view> names;
  for (size_t r = 0; r < kTensorRoleCount; ++r) {
    names.push_back(to_string(static_cast<TensorRole>(r)));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

int run_extract(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err) {
  const std::string& file = o.bundle_path;
  const size_t dot = o.tensor.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == o.tensor.size()) {
    err << "mpsb-dump: --extract wants LAYER.ROLE (e.g. conv1.weight), got '" << printable(o.tensor)
        << "'\n";
    return kExitUsage;
  }
  const std::string_view layer_name = std::string_view(o.tensor).substr(0, dot);
  const std::string_view role_name = std::string_view(o.tensor).substr(dot + 1);
  const std::optional<TensorRole> role = parse_role(role_name);
  if (!role) {
    err << "mpsb-dump: unknown tensor role '" << printable(role_name)
        << "' (roles: " << role_names() << ")\n";
    return kExitUsage;
  }
  const std::optional<Layer> layer = b.find(layer_name);
  if (!layer) {
    err << "mpsb-dump: " << printable(file) << ": no layer named '" << printable(layer_name)
        << "'\n";
    return kExitFailure;
  }
  const std::optional<Tensor> t = layer->find(*role);
  if (!t) {
    std::vector<std::string_view> has;
    for (size_t i = 0; i < layer->tensor_count(); ++i)
      has.push_back(to_string(layer->tensor(i).role()));
    err << "mpsb-dump: " << printable(file) << ": layer '" << printable(layer_name) << "' has no "
        << role_name << " tensor (it has: " << fmt::format("{}", fmt::join(has, ", ")) << ")\n";
    return kExitFailure;
  }
  // A folded conv's weight and bias are W·s and b·s + β − μ·s: giving
  // them back as the tensor's source bytes would be silently different
  // bytes (the bundle keeps no copy of PyTorch's).
  if (holds_folded_values(*layer, *t)) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor)
        << " holds folded values: batch norm '" << printable(layer->folded_batchnorm())
        << "' was folded into " << printable(layer_name)
        << " (--fold-batchnorm), and the bundle keeps no copy of PyTorch's " << to_string(*role)
        << "; extract it from a bundle compiled without --fold-batchnorm\n";
    return kExitFailure;
  }
  // Giving back bytes that no longer match their checksum would hand a
  // corrupt tensor to the user as if it were the original.
  if (const Status s = b.verify_layer(*layer); !s.ok()) {
    err << "mpsb-dump: " << s.message() << '\n';
    return kExitFailure;
  }
  std::string why;
  const std::optional<mpsbc::TensorPlan> plan = mpsbc::plan_from_stored(
      t->transform(), t->source_layout(), t->source_shape(), t->layout(), t->shape(), &why);
  if (!plan) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor)
        << ": cannot invert the stored layout: " << why << '\n';
    return kExitFailure;
  }
  const std::optional<DType> want = o.as ? o.as : default_extract_dtype(*t);
  if (!want) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor)
        << " is stored as uint8 codes; choose --as float32 (dequantized as MPS does) or --as "
           "uint8 (the codes)\n";
    return kExitUsage;
  }
  std::vector<std::byte> stored;
  if (!stored_values_as(*layer, *t, *want, &stored, &why)) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor) << ": " << why << '\n';
    return kExitFailure;
  }
  // A broadcast's source is its one element, not the stored C copies.
  uint64_t source_elements = 1;
  for (const uint64_t d : t->source_shape()) source_elements *= d;
  std::vector<std::byte> source(static_cast<size_t>(source_elements * dtype_size(*want)));
  mpsbc::invert(*plan, stored.data(), source.data(), dtype_size(*want));

  const std::string what =
      fmt::format("{}: {} {} {}, {} bytes", printable(o.tensor), to_string(*want),
                  to_string(t->source_layout()), shape_text(t->source_shape()), source.size());
  if (t->dtype() != t->source_dtype() && *want != t->source_dtype()) {
    // Not the bytes the exporter wrote: say what they are instead.
    err << "mpsb-dump: note: " << printable(o.tensor) << " was " << to_string(t->source_dtype())
        << " and is stored as " << to_string(t->dtype()) << "; writing the stored values as "
        << to_string(*want) << "\n";
  }
  if (o.output == "-") {
    out.write(reinterpret_cast<const char*>(source.data()),
              static_cast<std::streamsize>(source.size()));
    out.flush();
    if (!out) {
      err << "mpsb-dump: cannot write " << what << " to standard output\n";
      return kExitFailure;
    }
    return kExitOk;
  }
  if (!write_atomically(o.output, source, &why)) {
    err << "mpsb-dump: " << printable(why) << '\n';
    return kExitFailure;
  }
  out << "wrote " << what << " to " << printable(o.output) << '\n';
  return kExitOk;
}

}  // namespace mpsb::dump::detail
