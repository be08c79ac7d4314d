// App-launch costs, measured in one process and printed as
// "<name> <median> <unit>" lines for scripts/bench_report.py:
//
//   open N       Bundle::open (all structural checks of docs/FORMAT.md §5
//                steps 1-4) + Bundle::find of every layer by name, for
//                bundles of N layers;
//   open size    the same at equal layer count for 40 MB and 4 GiB of
//                weights (sparse files: open reads no weight page);
//   reorder      what apps do today on the given model: read each loose .bin
//                and reorder it with the four-nested-loop reorder;
//   touch        reading every weight once through a fresh mapping (page
//                faults) against read() of the same bytes from the page cache.
//
// The sparse bundles get their metadata from the compiler's own planner and
// metadata builder (compiler/src), so they are laid out exactly as mpsbc
// would lay them out; their data segment is a hole.
//
//   mpsb_open_bench WORKDIR [MANIFEST BUNDLE]   (the compiled ResNet-50-sized model)

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bundle_plan.h"
#include "bundle_writer.h"
#include "diagnostics.h"
#include "manifest.h"
#include "mpsb/bundle.h"
#include "naive_reorder.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Median seconds of `reps` runs of f.
double time_median(int reps, const std::function<void()>& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  return median(t);
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

void fail(const std::string& what) {
  std::fprintf(stderr, "open_bench: %s\n", what.c_str());
  std::exit(1);
}

// Writes a manifest of `layers` linear layers ("layer000042", vector input,
// identity transform) with `in` x `out` weights and a bias, then a bundle
// with the compiler's metadata and a sparse data segment. Returns the
// metadata size.
uint64_t make_sparse_bundle(const fs::path& dir, size_t layers, uint64_t in, uint64_t out,
                            const fs::path& bundle) {
  fs::create_directories(dir);
  nlohmann::json m = {{"format", "mpsb.manifest/1"}, {"name", "synthetic"}, {"layers", {}}};
  char name[32];
  for (size_t i = 0; i < layers; ++i) {
    std::snprintf(name, sizeof name, "layer%06zu", i);
    m["layers"].push_back({{"name", name},
                           {"type", "linear"},
                           {"in_features", in},
                           {"out_features", out},
                           {"weight", "w.bin"},
                           {"bias", "b.bin"}});
  }
  const fs::path manifest = dir / "manifest.json";
  std::ofstream(manifest) << m.dump();
  mpsbc::Diagnostics diag(manifest.string());
  bool io_error = false;
  auto parsed = mpsbc::parse_manifest(manifest.string(), diag, &io_error);
  if (!parsed || diag.has_errors())
    fail("synthetic manifest rejected: " +
         (diag.all().empty() ? std::string() : diag.all()[0].message));
  mpsbc::BundlePlan plan;
  if (!mpsbc::plan_bundle(*parsed, 16384, 256, &plan, diag)) fail("cannot plan");
  mpsbc::Metadata meta;
  if (!mpsbc::build_metadata(*parsed, plan, &meta, diag)) fail("cannot build metadata");
  const int fd = ::open(bundle.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ::ftruncate(fd, off_t(meta.file_size)) != 0 ||
      ::pwrite(fd, meta.bytes.data(), meta.bytes.size(), 0) != ssize_t(meta.bytes.size())) {
    fail("cannot write " + bundle.string());
  }
  ::close(fd);
  return meta.bytes.size();
}

std::vector<std::string> layer_names(const std::string& path) {
  auto b = mpsb::Bundle::open(path);
  if (!b.ok()) fail(b.message());
  std::vector<std::string> names;
  for (size_t i = 0; i < b->layer_count(); ++i) names.emplace_back(b->layer(i).name());
  return names;
}

// Open + find every layer by name, as an app does at launch. The bundles are
// kept and closed after the clock stops: an app does not close at launch, and
// unmapping a large mapping has a cost of its own.
double time_open_and_lookup(int reps, const std::string& path,
                            const std::vector<std::string>& names) {
  std::vector<mpsb::Bundle> kept;
  kept.reserve(size_t(reps));
  return time_median(reps, [&] {
    auto b = mpsb::Bundle::open(path);
    if (!b.ok()) fail(b.message());
    size_t found = 0;
    for (const auto& n : names) found += b->find(n).has_value();
    if (found != names.size()) fail("lookup failed");
    kept.push_back(std::move(*b));
  });
}

void report(const std::string& name, double value, const char* unit) {
  std::printf("%s %.6g %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 4) fail("usage: mpsb_open_bench WORKDIR [MANIFEST BUNDLE]");
  const fs::path work = argv[1];

  // Open + lookup by layer count (tiny tensors).
  for (size_t layers : {size_t{10}, size_t{1000}, size_t{100000}}) {
    const fs::path bundle = work / ("layers" + std::to_string(layers) + ".mpsb");
    const uint64_t meta =
        make_sparse_bundle(work / ("m" + std::to_string(layers)), layers, 16, 16, bundle);
    const auto names = layer_names(bundle.string());
    const int reps = layers >= 100000 ? 11 : 101;
    report("open_lookup_" + std::to_string(layers),
           time_open_and_lookup(reps, bundle.string(), names) * 1e3, "ms");
    report("metadata_bytes_" + std::to_string(layers), double(meta), "B");
  }

  // Equal layer count (100), 40 MB against 4 GiB of weights.
  {
    const size_t layers = 100;
    struct Size {
      const char* name;
      uint64_t in, out;
    } sizes[] = {{"40MB", 1000, 100}, {"4GiB", 10240, 1049}};
    for (const auto& s : sizes) {
      const fs::path bundle = work / (std::string("size_") + s.name + ".mpsb");
      make_sparse_bundle(work / (std::string("s") + s.name), layers, s.in, s.out, bundle);
      const auto names = layer_names(bundle.string());
      report(std::string("open_lookup_100layers_") + s.name,
             time_open_and_lookup(201, bundle.string(), names) * 1e3, "ms");
      report(std::string("file_bytes_") + s.name, double(fs::file_size(bundle)), "B");
    }
  }

  if (argc == 4) {
    const std::string manifest = argv[2], bundle_path = argv[3];
    const auto names = layer_names(bundle_path);

    // RSS growth from open + lookup, in this process.
    {
      const long before = rss_kib();
      auto b = mpsb::Bundle::open(bundle_path);
      if (!b.ok()) fail(b.message());
      size_t found = 0;
      for (const auto& n : names) found += b->find(n).has_value();
      const long after = rss_kib();
      report("rss_growth_open_resnet50", double(after - before) * 1024, "B");
      report("metadata_bytes_resnet50", double(b->metadata_bytes().size()), "B");
      (void)found;
    }
    report("open_lookup_resnet50", time_open_and_lookup(101, bundle_path, names) * 1e3, "ms");

    // What apps do today: read each loose .bin, reorder it by hand.
    std::vector<std::pair<std::string, mpsbc::TensorPlan>> loose;
    {
      mpsbc::Diagnostics diag(manifest);
      bool io_error = false;
      auto parsed = mpsbc::parse_manifest(manifest, diag, &io_error);
      if (!parsed) fail("cannot parse " + manifest);
      for (const auto& l : parsed->layers) {
        for (const auto& t : l.tensors) loose.emplace_back(t.path.string(), t.plan);
      }
    }
    report("load_reorder_resnet50",
           time_median(5,
                       [&] {
                         uint64_t sum = 0;
                         for (const auto& [path, plan] : loose) {
                           const uint64_t n = plan.element_count();
                           std::vector<float> src(n), dst(n);
                           std::FILE* f = std::fopen(path.c_str(), "rb");
                           if (!f || std::fread(src.data(), sizeof(float), n, f) != n)
                             fail("read " + path);
                           std::fclose(f);
                           mpsb::bench::naive_reorder(plan, src.data(), dst.data());
                           sum += uint64_t(dst[n / 2] != 0);
                         }
                         if (sum == 0) std::fprintf(stderr, " ");
                       }) *
               1e3,
           "ms");

    // First touch of every weight through a fresh mapping, against read()
    // from the page cache. Both sum the words so neither can be skipped.
    uint64_t segment_bytes = 0;
    volatile uint64_t sink = 0;
    report("touch_mapped_resnet50",
           time_median(11,
                       [&] {
                         auto b = mpsb::Bundle::open(bundle_path);
                         if (!b.ok()) fail(b.message());
                         uint64_t s = 0;
                         for (size_t i = 0; i < b->layer_count(); ++i) {
                           const auto l = b->layer(i);
                           for (size_t k = 0; k < l.tensor_count(); ++k) {
                             const auto bytes = l.tensor(k).bytes();
                             const auto* p = reinterpret_cast<const uint64_t*>(bytes.data());
                             for (size_t j = 0; j < bytes.size() / 8; ++j) s += p[j];
                           }
                         }
                         segment_bytes = b->segment().size();
                         sink = s;
                       }) *
               1e3,
           "ms");
    report("touch_read_resnet50",
           time_median(11,
                       [&] {
                         auto b = mpsb::Bundle::open(bundle_path);
                         const uint64_t off = b->segment_offset(), size = b->segment().size();
                         const int fd = ::open(bundle_path.c_str(), O_RDONLY);
                         std::vector<uint64_t> buf((1 << 20) / 8);
                         uint64_t s = 0;
                         for (uint64_t pos = 0; pos < size;) {
                           const ssize_t got =
                               ::pread(fd, buf.data(), buf.size() * 8, off_t(off + pos));
                           if (got <= 0) fail("pread");
                           for (size_t j = 0; j < size_t(got) / 8; ++j) s += buf[j];
                           pos += uint64_t(got);
                         }
                         ::close(fd);
                         sink = s;
                       }) *
               1e3,
           "ms");
    report("segment_bytes_resnet50", double(segment_bytes), "B");
  }
  return 0;
}
