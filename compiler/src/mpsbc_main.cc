// mpsbc: compiles an mpsb manifest into a bundle. The work is in
// mpsb_compiler (mpsbc/compile.h); this file only maps the command line.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fault_injection.h"
#include "mpsb/kinds.h"
#include "mpsb_text.h"
#include "mpsbc/compile.h"

namespace {

constexpr const char* kExitCodes = R"(Exit codes:
  0  ok
  2  bad command line: unknown option, missing argument, bad alignment, an
     output path that is a folder or one of the inputs, or --check or
     --probes-out on a manifest where no layer has a probe (nothing to check)
  3  bad input: the manifest or a .bin was rejected (every problem is listed)
  4  I/O error: a file could not be read or written
  5  --check: a layer's output is beyond the tolerance from PyTorch's probe)";

// "1.5 MiB": sizes on the progress bar.
using mpsb::text::human_bytes;

// A one-line bar on stderr, redrawn in place. Shown only on a terminal and
// only once a compile has run for a moment, so quick compiles print nothing
// extra; cleared before any other output.
class ProgressBar {
 public:
  void update(uint64_t done, uint64_t total) {
    using namespace std::chrono_literals;
    if (std::chrono::steady_clock::now() - start_ < 300ms) return;
    const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
    if (percent == last_percent_) return;
    last_percent_ = percent;
    constexpr int kWidth = 30;
    const int filled = percent * kWidth / 100;
    std::string bar;
    for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2588" : "\u00b7";
    std::fprintf(stderr, "\r\x1b[Kwriting %s %3d%%  %s of %s", bar.c_str(), percent,
                 human_bytes(done).c_str(), human_bytes(total).c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (drawn_) std::fputs("\r\x1b[K", stderr);
    drawn_ = false;
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int last_percent_ = -1;
  bool drawn_ = false;
};

// --legalize: what storing each refused conv dense costs, and the total.
void print_legalized(const mpsbc::CompileReport& report) {
  uint64_t bytes = 0, per_position = 0, total = 0;
  size_t n = 0;
  for (const auto& l : report.layers) {
    if (l.legalized_groups == 0) continue;
    const uint64_t macs = l.extra_macs_per_position * l.output_positions;
    std::printf(
        "legalized %s (groups %u -> dense): +%llu weight bytes, +%llu multiply-adds per "
        "output position",
        l.name.c_str(), l.legalized_groups, (unsigned long long)l.extra_weight_bytes,
        (unsigned long long)l.extra_macs_per_position);
    if (l.output_positions != 0) {
      std::printf(" (+%llu for the probe's %llu positions)", (unsigned long long)macs,
                  (unsigned long long)l.output_positions);
    }
    std::printf("\n");
    bytes += l.extra_weight_bytes, per_position += l.extra_macs_per_position, total += macs;
    ++n;
  }
  if (n > 1) {
    std::printf(
        "legalized %zu layers: +%llu weight bytes, +%llu multiply-adds per output "
        "position, +%llu for the probes\n",
        n, (unsigned long long)bytes, (unsigned long long)per_position, (unsigned long long)total);
  }
}

int finish(const mpsbc::CompileReport& report, bool json, bool quiet) {
  size_t warnings = 0, errors = 0;
  for (const auto& d : report.diagnostics) {
    const bool warning = d.severity == mpsbc::Diagnostic::Severity::kWarning;
    (warning ? warnings : errors) += 1;
    if (quiet && warning) continue;
    std::cerr << d.message << '\n';
  }
  // The count at the end, as compilers do, once there is anything to count;
  // --quiet keeps it only for errors.
  if (errors > 0 || (warnings > 0 && !quiet)) {
    std::cerr << "mpsbc: " << warnings << (warnings == 1 ? " warning, " : " warnings, ") << errors
              << (errors == 1 ? " error" : " errors") << '\n';
  }
  if (!json && !quiet) {
    // What --fold-batchnorm did: the folded norms are not in the bundle.
    std::string folds;
    size_t count = 0;
    for (const auto& l : report.layers) {
      if (l.folded_batchnorm.empty()) continue;
      folds += (count++ ? ", " : "") + mpsb::text::escape(l.folded_batchnorm) + " into " +
               mpsb::text::escape(l.name);
    }
    if (count > 0) {
      std::cout << "folded " << count << (count == 1 ? " batch norm: " : " batch norms: ") << folds
                << '\n';
    }
  }
  if (!json && !quiet) print_legalized(report);
  if (json) {
    std::cout << mpsbc::report_to_json(report) << '\n';
  } else if (!quiet && !report.checks.empty()) {
    // One line per checked layer: what --check measured against PyTorch.
    size_t width = 5;
    for (const auto& c : report.checks) width = std::max(width, c.layer.size());
    std::printf("%-*s  %12s  %12s  %s\n", int(width), "layer", "max abs err", "max rel err",
                "check");
    for (const auto& c : report.checks) {
      std::printf("%-*s  %12.3e  %12.3e  %s\n", int(width), c.layer.c_str(), c.max_abs_error,
                  c.max_rel_error, c.passed ? "ok" : "FAILED");
    }
  }
  return static_cast<int>(report.exit_code);
}

// "2 modules of the PyTorch model are not in this bundle: ...", after the
// summary line of a compile or check that succeeded; nothing for none.
void print_skipped(const mpsbc::CompileReport& report) {
  std::vector<std::pair<std::string_view, std::string_view>> modules;
  for (const auto& s : report.skipped) modules.emplace_back(s.name, s.type);
  if (!modules.empty()) std::cout << mpsb::text::skipped_modules_text(modules) << '\n';
}

// Options `compile` and `check` share: the bundle's alignments, the report.
void add_bundle_options(CLI::App* cmd, mpsbc::CompileOptions& options) {
  cmd->add_option("--segment-alignment", options.segment_alignment,
                  "alignment of the data segment, a power of two")
      ->capture_default_str();
  cmd->add_option("--tensor-alignment", options.tensor_alignment,
                  "alignment of each tensor in the segment, a power of two")
      ->capture_default_str();
}

void add_report_options(CLI::App* cmd, bool& json, bool& quiet) {
  cmd->add_flag("--json", json, "print a JSON report to stdout");
  cmd->add_flag("-q,--quiet", quiet, "print errors only");
}

// Options shared by the subcommands that read a manifest's layers.
void add_layer_options(CLI::App* cmd, mpsbc::CompileOptions& options, std::string& precision_text) {
  cmd->add_flag("--fold-batchnorm", options.fold_batchnorm,
                "fold each batch_norm2d that follows a conv into it (Apple's formula)");
  cmd->add_flag("--strict", options.strict, "treat MPS limits as errors instead of warnings");
  cmd->add_flag("--allow-unknown-fields", options.allow_unknown_fields,
                "warn about and ignore manifest fields the format does not have (an error by "
                "default)");
  cmd->add_flag("--legalize", options.legalize,
                "store grouped convs MPS refuses (channels per group not a multiple of 4, "
                "depthwise multiplier > 1) as the equivalent dense conv (an error otherwise)");
  cmd->add_flag("--allow-outside", options.allow_outside,
                "accept tensor and probe paths that are absolute or leave the manifest's folder");
  cmd->add_flag("--allow-non-finite", options.allow_non_finite,
                "accept NaN and infinite weights (an error by default)");
  cmd->add_option("--precision", precision_text,
                  "stored precision of conv and linear weights (a layer's \"precision\" in the "
                  "manifest wins): float32, float16, uint8-linear or uint8-lut")
      ->check(CLI::IsMember({"float32", "float16", "uint8-linear", "uint8-lut"}))
      ->capture_default_str();
  cmd->add_flag("--allow-overflow", options.allow_overflow,
                "float16: clamp weights beyond ±65504 instead of failing");
}

void add_check_options(CLI::App* cmd, mpsbc::CompileOptions& options) {
  cmd->add_option("--check-tolerance", options.check_tolerance,
                  "largest max|ours - PyTorch| / max|PyTorch| accepted; default by weight "
                  "precision: float32 1e-5, float16 2e-3, uint8-linear 3e-2, uint8-lut 3e-2");
}

// A float as the shortest decimal that reads back as it (0.01f is 0.01,
// not 0.009999999776482582), so the table's defaults compare as written.
double shortest(float f) {
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf - 1, f).ptr;
  *end = '\0';
  return std::strtod(buf, nullptr);
}

std::string_view field_type_name(mpsb::FieldType t) {
  using mpsb::FieldType;
  switch (t) {
    case FieldType::kUInt:
      return "uint";
    case FieldType::kPair:
      return "pair";
    case FieldType::kFloat:
      return "float";
    case FieldType::kBool:
      return "bool";
    case FieldType::kShape3:
      return "shape3";
    case FieldType::kString:
      return "string";
    case FieldType::kAccepted:
      return "accepted";
  }
  return "";
}

std::string_view presence_name(mpsb::Presence p) {
  using mpsb::Presence;
  switch (p) {
    case Presence::kRequired:
      return "required";
    case Presence::kOptional:
      return "optional";
    case Presence::kAffine:
      return "affine";
    case Presence::kQuantized:
      return "quantized";
    case Presence::kFusedPReLU:
      return "fused_prelu";
  }
  return "";
}

// PyTorch's default of an optional field, as the manifest would spell it;
// null for required fields and for fields without a value of their own.
nlohmann::json field_default(const mpsb::FieldSpec& f) {
  using mpsb::FieldType;
  if (f.required) return nullptr;
  switch (f.type) {
    case FieldType::kUInt:
    case FieldType::kPair:
      return static_cast<uint32_t>(f.fallback);
    case FieldType::kFloat:
      return shortest(static_cast<float>(f.fallback));
    case FieldType::kBool:
      return f.fallback != 0;
    case FieldType::kShape3:
    case FieldType::kString:
    case FieldType::kAccepted:
      break;
  }
  return nullptr;
}

// mpsb/kinds.h as JSON: what `mpsbc kinds --json` prints, and what the
// exporter's table is tested against (tests/pytorch/kinds_test.py).
nlohmann::json kinds_json() {
  using nlohmann::json;
  json kinds = json::array();
  for (const mpsb::KindSpec& k : mpsb::kKinds) {
    json fields = json::array();
    for (const mpsb::FieldSpec& f : k.fields) {
      fields.push_back({{"name", f.name},
                        {"type", field_type_name(f.type)},
                        {"required", f.required},
                        {"default", field_default(f)}});
    }
    json roles = json::array();
    for (const mpsb::RoleSpec& r : k.roles) {
      roles.push_back({{"role", mpsb::to_string(r.role)},
                       {"field", r.field.empty() ? json(nullptr) : json(r.field)},
                       {"presence", presence_name(r.presence)},
                       {"source_layout", mpsb::to_string(r.source_layout)},
                       {"stored_layout", mpsb::to_string(r.stored_layout)},
                       {"transform", mpsb::to_string(r.transform)}});
    }
    // "manifest": false for the probe files' kind, which no manifest names.
    kinds.push_back({{"name", k.name},
                     {"manifest", mpsb::in_manifest(k)},
                     {"pytorch", k.pytorch.empty() ? json(nullptr) : json(k.pytorch)},
                     {"mps_data_source", k.mps_data_source},
                     {"mps_kernel", k.mps_kernel},
                     {"fused_activation", k.fused_activation},
                     {"precision", k.precision},
                     {"fields", fields},
                     {"roles", roles}});
  }
  json activations = json::array();
  for (const mpsb::ActivationSpec& a : mpsb::kActivations) {
    json params = json::array();
    for (size_t i = 0; i < 2; ++i) {
      if (a.param_names[i].empty()) continue;
      params.push_back({{"name", a.param_names[i]}, {"default", shortest(a.param_defaults[i])}});
    }
    json entry = {{"name", a.name},
                  {"pytorch", a.pytorch.empty() ? json(nullptr) : json(a.pytorch)},
                  {"mps_neuron_type", a.mps_neuron_type},
                  {"params", params},
                  {"option", nullptr}};
    if (!a.option.empty()) entry["option"] = {{"name", a.option}, {"value", a.option_value}};
    activations.push_back(entry);
  }
  return {{"kinds", kinds}, {"activations", activations}};
}

// `mpsbc kinds` without --json: one line per kind and activation.
void print_kinds() {
  std::printf("%-18s %-20s %s\n", "kind", "pytorch", "fields");
  for (const mpsb::KindSpec& k : mpsb::kKinds) {
    std::string fields;
    for (const mpsb::FieldSpec& f : k.fields) {
      fields += (fields.empty() ? "" : ", ") + std::string(f.name);
    }
    if (!mpsb::in_manifest(k)) fields = "(probe files only, not a manifest type)";
    std::printf("%-18s %-20s %s\n", std::string(k.name).c_str(),
                k.pytorch.empty() ? "-" : std::string(k.pytorch).c_str(), fields.c_str());
  }
  std::printf("\n%-18s %-20s %s\n", "activation", "pytorch", "params");
  for (const mpsb::ActivationSpec& a : mpsb::kActivations) {
    std::string params;
    for (std::string_view p : a.param_names) {
      if (!p.empty()) params += (params.empty() ? "" : ", ") + std::string(p);
    }
    std::printf("%-18s %-20s %s\n", std::string(a.name).c_str(),
                a.pytorch.empty() ? "-" : std::string(a.pytorch).c_str(), params.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mpsbc: compiles a PyTorch CNN's weights (mpsb.manifest/1) into an .mpsb bundle"};
  app.set_version_flag("--version", mpsbc::producer_string());
  app.require_subcommand(1);
  app.footer(std::string(R"(Examples:
  mpsbc compile model/manifest.json -o model.mpsb
  mpsbc check model/manifest.json
  mpsbc kinds --json
  mpsbc compile --help

)") + kExitCodes);

  mpsbc::CompileOptions options;
  std::string precision_text = "float32";
  bool json = false, quiet = false;

  auto* compile = app.add_subcommand("compile", "validate the manifest and write the bundle");
  compile->footer(std::string(R"(Examples:
  mpsbc compile model/manifest.json -o model.mpsb
  mpsbc compile model/manifest.json -o model.mpsb --fold-batchnorm --check
  mpsbc compile model/manifest.json -o model.mpsb --probes-out model.probes.mpsb
  mpsbc compile model/manifest.json -o model.mpsb --tensor-alignment 16384 -j 4
  mpsbc compile model/manifest.json -o model.mpsb --json -q > report.json

A progress bar is drawn on stderr when it is a terminal (not with -q).
)") + kExitCodes);
  compile->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  compile->add_option("-o,--output", options.output_path, "bundle to write (replaced atomically)")
      ->required();
  add_bundle_options(compile, options);
  compile->add_option("-j,--jobs", options.jobs, "worker threads; 0 = one per core")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();
  add_report_options(compile, json, quiet);
  compile->add_flag(
      "--check", options.check,
      "run every probed layer on the CPU reference from the written bundle and "
      "compare with PyTorch's output; fail (exit 5, nothing written) above tolerance");
  add_check_options(compile, options);
  compile
      ->add_option("--probes-out", options.probes_out,
                   "also write every probed layer's PyTorch input and output to this probe file, "
                   "for `mpsb-dump BUNDLE --check FILE` without the manifest (replaced "
                   "atomically, with the bundle)")
      ->type_name("FILE");
  add_layer_options(compile, options, precision_text);
  // Test-only: proves --check tells a right layout from a wrong one.
  std::string mutation;
  compile->add_option("--debug-mutate", mutation)
      ->check(CLI::IsMember({"no-rotation", "no-flatten-permute", "wrong-block"}))
      ->group("");

  auto* check = app.add_subcommand("check", "validate the manifest and its files; write nothing");
  check->footer(
      std::string(R"(Runs every check of `compile` (with the same options) and writes nothing.

Examples:
  mpsbc check model/manifest.json
  mpsbc check model/manifest.json -o model.mpsb --tensor-alignment 16384
  mpsbc check model/manifest.json --strict --json | jq .diagnostics

)") + kExitCodes);
  check->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  check
      ->add_option("-o,--output", options.output_path,
                   "also check this output path as compile would (nothing is written)")
      ->type_name("FILE");
  add_bundle_options(check, options);
  add_report_options(check, json, quiet);
  add_layer_options(check, options, precision_text);

  auto* kinds = app.add_subcommand(
      "kinds", "print the layer kinds and fused activations a manifest can use (mpsb/kinds.h)");
  kinds->footer(std::string(R"(Examples:
  mpsbc kinds
  mpsbc kinds --json | jq '.activations[].name'

)") + kExitCodes);
  bool kinds_as_json = false;
  kinds->add_flag("--json", kinds_as_json,
                  "print every kind's fields with defaults and tensor roles, and every "
                  "activation's parameters, as JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2.
    return app.exit(e) == 0 ? 0 : static_cast<int>(mpsbc::ExitCode::kUsage);
  }

  if (*kinds) {
    if (kinds_as_json) {
      std::cout << kinds_json().dump(2) << '\n';
    } else {
      print_kinds();
    }
    return 0;
  }
  options.precision = *mpsbc::parse_precision(precision_text);
  mpsbc::Mutation fault = mpsbc::Mutation::kNone;
  if (mutation == "no-rotation") fault = mpsbc::Mutation::kNoRotation;
  if (mutation == "no-flatten-permute") fault = mpsbc::Mutation::kNoFlattenPermute;
  if (mutation == "wrong-block") fault = mpsbc::Mutation::kWrongBlock;
  if (*check) {
    const auto report = mpsbc::check_manifest(options);
    const int rc = finish(report, json, quiet);
    if (report.ok() && !json && !quiet) {
      std::cout << options.manifest_path << ": ok, " << report.layers.size() << " layers, "
                << report.tensor_bytes << " tensor bytes, bundle " << report.file_size
                << " bytes\n";
      print_skipped(report);
    }
    return rc;
  }
  ProgressBar progress;
  if (!quiet && ::isatty(STDERR_FILENO) == 1) {
    options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  }
  const auto report = mpsbc::compile_with_fault(options, fault);
  progress.clear();
  const int rc = finish(report, json, quiet);
  if (report.ok() && !json && !quiet) {
    std::cout << "wrote " << options.output_path << ": " << report.layers.size() << " layers, "
              << report.file_size << " bytes\n";
    print_skipped(report);
  }
  return rc;
}
