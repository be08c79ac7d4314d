#include "mpsbc/compile.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "bundle_plan.h"
#include "bundle_writer.h"
#include "check.h"
#include "compile_hooks.h"
#include "diagnostics.h"
#include "fault_injection.h"
#include "fold.h"
#include "legalize.h"
#include "manifest.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsb/kinds.h"
#include "mpsb_text.h"
#include "mpsbc/layout.h"
#include "precision_plan.h"
#include "tensor_files.h"

#ifndef MPSB_VERSION_STRING
#error "MPSB_VERSION_STRING must be defined by the build"
#endif

namespace mpsbc {
namespace {

std::vector<LayerReport> layer_reports(const Manifest& manifest) {
  std::vector<LayerReport> out;
  for (const auto& l : manifest.layers) {
    LayerReport lr;
    lr.name = l.name;
    lr.kind = std::string(mpsb::to_string(l.kind));
    lr.tensor_count = l.tensors.size();
    lr.folded_batchnorm = l.folded_from;
    for (const auto& t : l.tensors) lr.bytes += t.size;
    if (mpsb::kind_spec(l.kind).precision) {
      lr.precision = std::string(to_string(l.weight_precision));
      lr.precision_note = l.precision_note;
      lr.max_abs_error = l.weight_error.max_abs;
      lr.sqnr_db = l.weight_precision == Precision::kFloat32
                       ? std::numeric_limits<double>::infinity()
                       : l.weight_error.sqnr_db;
      lr.half_overflow = l.half.overflow;
      lr.half_flushed = l.half.flushed_to_zero;
      lr.half_subnormal = l.half.subnormal;
    }
    if (l.legalized_groups != 0) {
      const LegalizeCost cost = legalize_cost(l);
      lr.legalized_groups = l.legalized_groups;
      lr.extra_weight_bytes = cost.extra_weight_bytes;
      lr.extra_macs_per_position = cost.extra_macs_per_position;
      // The probe's output [N][C][H][W] says how many positions one run has.
      const Probe* probe = l.probe ? &*l.probe : nullptr;
      if (probe && probe->output_shape.size() == 4) {
        const auto& s = probe->output_shape;
        lr.output_positions = s[0] * s[2] * s[3];
      }
    }
    out.push_back(std::move(lr));
  }
  return out;
}

struct Prepared {
  Manifest manifest;
  BundlePlan plan;
  Metadata metadata;
  // --probes-out: the probe file's layers (probe_manifest).
  Manifest probes;
};

bool has_probe(const Manifest& manifest) {
  for (const auto& l : manifest.layers) {
    if (l.probe) return true;
  }
  return false;
}

// The probe file as a manifest the bundle writer takes (docs/FORMAT.md §8):
// one probe layer per probed layer, named as it, with its PyTorch input and
// the output it must reproduce (a folded conv: its batch norm's) read from
// the probe's .bin files and stored NHWC. Call after folding.
bool probe_manifest(const Manifest& model, Diagnostics& diag, Manifest* out) {
  out->path = model.path;
  out->name = model.name;
  out->has_metadata = true;
  bool ok = true;
  for (const ManifestLayer& l : model.layers) {
    const std::optional<Probe>& out_probe = l.folded_from.empty() ? l.probe : l.folded_probe;
    if (!l.probe || !out_probe) continue;
    ManifestLayer p;
    p.name = l.name;
    p.index = static_cast<uint32_t>(out->layers.size());
    p.pointer = l.pointer;
    p.kind = mpsb::LayerKind::kProbe;
    for (const bool input : {true, false}) {
      const Probe& from = input ? *l.probe : *out_probe;
      const auto& shape = input ? from.input_shape : from.output_shape;
      ManifestTensor t;
      t.role = input ? mpsb::TensorRole::kProbeInput : mpsb::TensorRole::kProbeOutput;
      t.pointer = from.pointer + (input ? "/input" : "/output");
      t.path_text = input ? from.input_text : from.output_text;
      t.path = input ? from.input : from.output;
      if (shape.size() != 2 && shape.size() != 4) {
        diag.error(t.pointer,
                   "--probes-out: a probe file stores [N, C, H, W] or [N, F] feature "
                   "maps, this probe has " +
                       std::to_string(shape.size()) + " dimensions");
        ok = false;
        continue;
      }
      t.plan = plan_feature_map(shape);
      t.source_size = t.size = t.plan.element_count() * sizeof(float);
      p.tensors.push_back(std::move(t));
    }
    out->layers.push_back(std::move(p));
  }
  return ok;
}

// Writes the probe file of the bundle at `bundle`, which is complete but
// not yet renamed over the output.
bool write_probe_file(Manifest& probes, const mpsb::Bundle& bundle, const CompileOptions& options,
                      Diagnostics& diag, bool* io_failure) {
  probes.metadata = {
      {mpsb::text::kProbesForKey, mpsb::text::probes_for_value(bundle.segment_checksum())}};
  BundlePlan plan;
  Metadata metadata;
  if (!plan_bundle(probes, options.segment_alignment, options.tensor_alignment, &plan, diag) ||
      !build_metadata(probes, plan, &metadata, diag)) {
    return false;
  }
  WriteOptions write;
  write.jobs = options.jobs;
  return write_bundle(probes, plan, std::move(metadata), options.probes_out, write, diag,
                      io_failure);
}

// Every check that needs no output: options, manifest, .bin files, plan.
// Fills the report's layers and sizes as far as it gets. Returns false with
// report.exit_code set when anything failed.
bool prepare(const CompileOptions& options, bool writes_bundle, Diagnostics& diag,
             CompileReport& report, Prepared& out, const FoldFilter& fold_only = nullptr) {
  const bool options_ok =
      check_alignments(options.segment_alignment, options.tensor_alignment, diag);
  if (options.manifest_path.empty()) {
    diag.error_in("manifest", "no manifest path given");
    report.exit_code = ExitCode::kUsage;
    return false;
  }

  bool io_error = false;
  auto manifest = parse_manifest(options.manifest_path, diag, &io_error);
  if (!manifest) {
    report.exit_code = io_error ? ExitCode::kIo : ExitCode::kBadInput;
    return false;
  }
  // Before anything reads the weights' plans: a refused conv is an error,
  // or stored dense (--legalize).
  legalize_layers(*manifest, options.legalize, diag);
  report.layers = layer_reports(*manifest);
  for (const SkippedModule& s : manifest->skipped)
    report.skipped.push_back({s.name, s.type, s.reason});
  const bool wants_probes = options.check || !options.probes_out.empty();
  // Also for a manifest with field errors: the files of the layers that did
  // parse are worth reporting in the same run.
  // A compile that writes scans for NaN and infinities in the bytes it
  // writes; one that does not (mpsbc check) scans here.
  check_tensor_files(*manifest, diag,
                     {.allow_outside = options.allow_outside,
                      .allow_non_finite = options.allow_non_finite,
                      .scan_non_finite = !writes_bundle});
  if (wants_probes) check_probe_files(*manifest, diag, options.allow_outside);
  const bool input_errors = diag.has_errors();
  if (wants_probes && !has_probe(*manifest)) {
    // Never an "OK" over nothing: a usage error, unless the manifest has
    // errors of its own (reported with it, in the same run).
    diag.error_in(options.manifest_path,
                  std::string(options.check ? "--check" : "--probes-out") +
                      ": no layer of the manifest has a probe, so there is nothing to check "
                      "(the exporter writes them; docs/MANIFEST.md)");
  }
  if (diag.has_errors()) {
    report.exit_code = options_ok && input_errors ? ExitCode::kBadInput : ExitCode::kUsage;
    return false;
  }
  if (options.fold_batchnorm || fold_only) {
    if (!fold_batchnorm(*manifest, diag, fold_only)) {
      report.exit_code = ExitCode::kBadInput;
      return false;
    }
  }
  const PrecisionOptions precision{options.precision, options.allow_overflow};
  plan_precision(*manifest, precision, diag);
  if (!measure_precision(*manifest, precision, diag)) {
    report.exit_code = ExitCode::kBadInput;
    return false;
  }
  // The report lists what the bundle holds.
  report.layers = layer_reports(*manifest);
  if (!options.probes_out.empty() && !probe_manifest(*manifest, diag, &out.probes)) {
    report.exit_code = ExitCode::kBadInput;
    return false;
  }
  if (!plan_bundle(*manifest, options.segment_alignment, options.tensor_alignment, &out.plan,
                   diag) ||
      !build_metadata(*manifest, out.plan, &out.metadata, diag)) {
    report.exit_code = ExitCode::kBadInput;
    return false;
  }
  report.tensor_bytes = out.plan.tensor_bytes;
  report.segment_offset = out.metadata.segment_offset;
  report.segment_size = out.plan.segment_size;
  report.file_size = out.metadata.file_size;
  out.manifest = std::move(*manifest);
  return true;
}

bool same_file(const struct stat& a, const std::string& path) {
  struct stat b;
  return ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Refuses an output that is a folder or one of the inputs: renaming over an
// input would destroy it, and the next compile would read the bundle.
bool check_output(const std::string& output, const Manifest& manifest, Diagnostics& diag) {
  if (output.empty()) {
    diag.error_in("output", "no output path given");
    return false;
  }
  struct stat st;
  if (::stat(output.c_str(), &st) != 0) return true;  // new file; the write reports other errors
  if (S_ISDIR(st.st_mode)) {
    diag.error_in(output, "is a directory; expected a bundle file path");
    return false;
  }
  if (same_file(st, manifest.path)) {
    diag.error_in(output, "is the manifest itself; choose another output path");
    return false;
  }
  for (const auto& l : manifest.layers) {
    for (const auto& t : l.tensors) {
      if (same_file(st, t.path.string())) {
        diag.error(t.pointer, "the output " + output +
                                  " is this tensor's file; choose another "
                                  "output path");
        return false;
      }
    }
  }
  return true;
}

// --probes-out: a path check_output() accepts that is not the bundle's.
bool check_probes_output(const CompileOptions& options, const Manifest& manifest,
                         Diagnostics& diag) {
  if (options.probes_out.empty()) return true;
  if (!check_output(options.probes_out, manifest, diag)) return false;
  struct stat st;
  if (options.probes_out == options.output_path ||
      (::stat(options.probes_out.c_str(), &st) == 0 && same_file(st, options.output_path))) {
    diag.error_in(options.probes_out, "--probes-out is the bundle's own output path");
    return false;
  }
  return true;
}

}  // namespace

bool is_mpsb_container(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[12] = {};
  if (!in.read(head, sizeof head)) return false;
  return std::memcmp(head + 8, mpsb::fb::BundleIdentifier(), 4) == 0;
}

std::string producer_string() { return std::string("mpsbc ") + MPSB_VERSION_STRING; }

CompileReport check_manifest(const CompileOptions& options) {
  CompileReport report;
  Diagnostics diag(options.manifest_path);
  diag.set_strict(options.strict);
  diag.set_allow_unknown_fields(options.allow_unknown_fields);
  Prepared prepared;
  // The output path too, when given: `mpsbc check -o` runs every check
  // `mpsbc compile -o` would before writing.
  if (prepare(options, false, diag, report, prepared) && !options.output_path.empty() &&
      !check_output(options.output_path, prepared.manifest, diag)) {
    report.exit_code = ExitCode::kUsage;
  }
  report.diagnostics = std::move(diag.all());
  return report;
}

CompileReport compile(const CompileOptions& options) { return compile_with_hooks(options, {}); }

CompileReport compile_with_fault(const CompileOptions& options, Mutation mutation) {
  CompileHooks hooks;
  hooks.mutation = mutation;
  return compile_with_hooks(options, hooks);
}

CompileReport compile_with_hooks(const CompileOptions& options, const CompileHooks& hooks) {
  CompileReport report;
  Diagnostics diag(options.manifest_path);
  diag.set_strict(options.strict);
  diag.set_allow_unknown_fields(options.allow_unknown_fields);
  Prepared prepared;
  if (prepare(options, true, diag, report, prepared)) {
    if (!check_output(options.output_path, prepared.manifest, diag) ||
        !check_probes_output(options, prepared.manifest, diag)) {
      report.exit_code = ExitCode::kUsage;
    } else {
      bool io_failure = false;
      bool check_failed = false;
      // The probe file's write, which write_bundle's own flag cannot carry
      // (it clears it when before_commit abandons the bundle).
      bool probes_io_failure = false;
      WriteOptions write;
      write.jobs = options.jobs;
      write.mutation = hooks.mutation;
      write.progress = options.progress;
      write.allow_non_finite = options.allow_non_finite;
      write.before_stream = hooks.before_stream;
      if (options.check || !options.probes_out.empty()) {
        // Checked, and the probe file written, before the rename: a bundle
        // that fails never replaces the output, nor does one whose probe
        // file could not be written.
        write.before_commit = [&](const std::string& temp_path) {
          auto bundle = mpsb::Bundle::open(temp_path, {.verify_checksums = true});
          if (!bundle.ok()) {
            diag.error_in(options.output_path,
                          "the written bundle does not open: " + bundle.message());
            check_failed = options.check;
            return false;
          }
          if (options.check) {
            check_failed = !run_checks(*bundle, prepared.manifest, options.check_tolerance, diag,
                                       &report.checks);
            if (check_failed) return false;
          }
          return options.probes_out.empty() ||
                 write_probe_file(prepared.probes, *bundle, options, diag, &probes_io_failure);
        };
      }
      if (!write_bundle(prepared.manifest, prepared.plan, std::move(prepared.metadata),
                        options.output_path, write, diag, &io_failure)) {
        report.exit_code = check_failed                      ? ExitCode::kCheckFailed
                           : io_failure || probes_io_failure ? ExitCode::kIo
                                                             : ExitCode::kBadInput;
      }
    }
  }
  report.diagnostics = std::move(diag.all());
  return report;
}

CompileReport check_bundle(const std::string& bundle_path, const CompileOptions& options) {
  CompileReport report;
  Diagnostics diag(options.manifest_path);
  diag.set_strict(options.strict);
  diag.set_allow_unknown_fields(options.allow_unknown_fields);
  auto bundle = mpsb::Bundle::open(bundle_path, {.verify_checksums = true});
  if (!bundle.ok()) {
    diag.error_in(bundle_path, bundle.message());
    report.exit_code = ExitCode::kBadInput;
    report.diagnostics = std::move(diag.all());
    return report;
  }
  // The bundle says which batch norm each conv folded: exactly those are
  // folded, into the conv the bundle names. One the bundle still holds is
  // checked as a batch norm. Only a bundle that records no fold (from an
  // mpsbc before Layer.folded_batchnorm) needs options.fold_batchnorm.
  std::map<std::string, std::string, std::less<>> folded_into;
  for (size_t i = 0; i < bundle->layer_count(); ++i) {
    const mpsb::Layer l = bundle->layer(i);
    if (!l.folded_batchnorm().empty()) {
      folded_into.emplace(std::string(l.folded_batchnorm()), std::string(l.name()));
    }
  }
  const mpsb::Bundle& b = *bundle;
  const bool flag = options.fold_batchnorm;
  const FoldFilter fold_only = [&](const ManifestLayer& bn) {
    if (auto it = folded_into.find(bn.name); it != folded_into.end()) {
      return it->second == bn.follows;
    }
    return folded_into.empty() && flag && !b.find(bn.name);
  };
  CompileOptions check_options = options;
  check_options.check = true;
  check_options.fold_batchnorm = false;
  // The bundle says which layers are stored dense; the probes are the same.
  check_options.legalize = true;
  Prepared prepared;
  if (prepare(check_options, false, diag, report, prepared, fold_only) &&
      !run_checks(*bundle, prepared.manifest, options.check_tolerance, diag, &report.checks)) {
    report.exit_code = ExitCode::kCheckFailed;
  }
  report.diagnostics = std::move(diag.all());
  return report;
}

CompileReport check_probes(const std::string& bundle_path, const std::string& probes_path,
                           std::optional<double> tolerance) {
  CompileReport report;
  Diagnostics diag(probes_path);
  auto bundle = mpsb::Bundle::open(bundle_path, {.verify_checksums = true});
  auto probes = mpsb::Bundle::open(probes_path, {.verify_checksums = true});
  if (!bundle.ok() || !probes.ok()) {
    // The runtime's messages name the file.
    if (!bundle.ok()) diag.error_in(bundle_path, bundle.message());
    if (!probes.ok()) diag.error_in(probes_path, probes.message());
    report.exit_code = ExitCode::kBadInput;
  } else if (const std::optional<uint64_t> owner = probes_for(*probes); !owner) {
    diag.error_in(probes_path, "an mpsb bundle, not a probe file (no metadata " +
                                   std::string(mpsb::text::kProbesForKey) +
                                   "); --check takes a probe file or a manifest");
    report.exit_code = ExitCode::kBadInput;
  } else if (const uint64_t own = bundle->segment_checksum(); *owner != own) {
    diag.error_in(probes_path, "the probe file of another bundle: it names segment checksum " +
                                   mpsb::text::probes_for_value(*owner) + ", " + bundle_path +
                                   " has " + mpsb::text::probes_for_value(own) +
                                   " (compile with --probes-out again)");
    report.exit_code = ExitCode::kBadInput;
  } else if (probes->layer_count() == 0) {
    diag.error_in(probes_path, "--check: the probe file has no layers; nothing to check");
    report.exit_code = ExitCode::kUsage;
  } else if (!run_probe_checks(*bundle, *probes, tolerance, diag, &report.checks)) {
    report.exit_code = ExitCode::kCheckFailed;
  }
  report.diagnostics = std::move(diag.all());
  return report;
}

std::string report_to_json(const CompileReport& report) {
  nlohmann::ordered_json j;
  j["ok"] = report.ok();
  j["exit_code"] = static_cast<int>(report.exit_code);
  j["file_size"] = report.file_size;
  j["segment_offset"] = report.segment_offset;
  j["segment_size"] = report.segment_size;
  j["tensor_bytes"] = report.tensor_bytes;
  j["layers"] = nlohmann::ordered_json::array();
  for (const auto& l : report.layers) {
    nlohmann::ordered_json e = {
        {"name", l.name}, {"kind", l.kind}, {"bytes", l.bytes}, {"tensors", l.tensor_count}};
    if (!l.folded_batchnorm.empty()) e["folded_batchnorm"] = l.folded_batchnorm;
    if (!l.precision.empty()) {
      e["precision"] = l.precision;
      if (!l.precision_note.empty()) e["precision_note"] = l.precision_note;
      e["max_abs_error"] = l.max_abs_error;
      // JSON has no infinity: null means exact.
      e["sqnr_db"] =
          std::isinf(l.sqnr_db) ? nlohmann::ordered_json() : nlohmann::ordered_json(l.sqnr_db);
      if (l.precision == "float16") {
        e["float16"] = {{"overflow", l.half_overflow},
                        {"flushed_to_zero", l.half_flushed},
                        {"subnormal", l.half_subnormal}};
      }
    }
    if (l.legalized_groups != 0) {
      e["legalized"] = {{"groups", l.legalized_groups},
                        {"extra_weight_bytes", l.extra_weight_bytes},
                        {"extra_multiply_adds_per_position", l.extra_macs_per_position},
                        {"output_positions", l.output_positions},
                        {"extra_multiply_adds", l.extra_macs_per_position * l.output_positions}};
    }
    j["layers"].push_back(std::move(e));
  }
  if (!report.checks.empty()) {
    j["check"] = nlohmann::ordered_json::array();
    for (const auto& c : report.checks) {
      j["check"].push_back({{"layer", c.layer},
                            {"expected_from", c.expected_from},
                            {"max_abs_error", c.max_abs_error},
                            {"max_rel_error", c.max_rel_error},
                            {"tolerance", c.tolerance},
                            {"passed", c.passed}});
    }
  }
  j["skipped_modules"] = nlohmann::ordered_json::array();
  for (const auto& s : report.skipped) {
    j["skipped_modules"].push_back({{"name", s.name}, {"type", s.type}, {"reason", s.reason}});
  }
  uint64_t legal_bytes = 0, legal_macs = 0;
  size_t legal_layers = 0;
  for (const auto& l : report.layers) {
    if (l.legalized_groups == 0) continue;
    ++legal_layers;
    legal_bytes += l.extra_weight_bytes;
    legal_macs += l.extra_macs_per_position * l.output_positions;
  }
  if (legal_layers != 0) {
    j["legalized"] = {{"layers", legal_layers},
                      {"extra_weight_bytes", legal_bytes},
                      {"extra_multiply_adds", legal_macs}};
  }
  j["diagnostics"] = nlohmann::ordered_json::array();
  for (const auto& d : report.diagnostics) {
    j["diagnostics"].push_back(
        {{"severity", d.severity == Diagnostic::Severity::kError ? "error" : "warning"},
         {"file", d.file},
         {"pointer", d.pointer},
         {"message", d.text}});
  }
  // Names come from the manifest. ensure_ascii writes every non-ASCII code
  // point as \uXXXX, so a bidi override cannot reach a terminal raw (as in
  // mpsb-dump's JSON) and every JSON reader still gets the exact text back;
  // bytes that are not UTF-8 (in the JSON parser's own messages) are replaced
  // rather than thrown on.
  return j.dump(2, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace mpsbc
