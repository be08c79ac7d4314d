// Strict manifests (docs/MANIFEST.md, "Unknown fields"): a field the format
// does not have is an error naming its JSON pointer and, where one is close,
// the field meant; --allow-unknown-fields makes it a warning. Normalization
// tensors agree with "affine". The exporter's "skipped" list is validated,
// stored in the bundle and shown. Each case asserts the exit code, the
// pointer and the whole message.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsbc/compile.h"

namespace {

using mpsb::testing::errors_of;
using mpsb::testing::ModelBuilder;
using mpsbc::Diagnostic;
using mpsbc::ExitCode;
using nlohmann::json;

// "<manifest>: <pointer>: <text>" as every message reads.
std::string message(const ModelBuilder& m, const std::string& pointer, const std::string& text,
                    bool warning = false) {
  return m.options().manifest_path + ": " + pointer + ": " + (warning ? "warning: " : "") + text;
}

std::vector<std::string> messages(const mpsbc::CompileReport& r, Diagnostic::Severity severity) {
  std::vector<std::string> out;
  for (const auto& d : r.diagnostics) {
    if (d.severity == severity) out.push_back(d.message);
  }
  return out;
}
std::vector<std::string> errors(const mpsbc::CompileReport& r) {
  return messages(r, Diagnostic::Severity::kError);
}
std::vector<std::string> warnings(const mpsbc::CompileReport& r) {
  return messages(r, Diagnostic::Severity::kWarning);
}

mpsbc::CompileReport compile(ModelBuilder& m, bool allow_unknown = false) {
  m.write_manifest();
  auto o = m.options("out.mpsb");
  o.allow_unknown_fields = allow_unknown;
  return mpsbc::compile(o);
}

// An instance norm "in" of 8 channels after conv "c" (3 -> 8), its γ and β
// written under the names `weight_key` and `bias_key`.
json& add_instance_norm(ModelBuilder& m, const std::string& weight_key,
                        const std::string& bias_key) {
  m.write_floats("in.weight.bin", 8);
  m.write_floats("in.bias.bin", 8);
  m.manifest()["layers"].push_back({{"name", "in"},
                                    {"type", "instance_norm2d"},
                                    {"num_features", 8},
                                    {"affine", true},
                                    {weight_key, "in.weight.bin"},
                                    {bias_key, "in.bias.bin"}});
  return m.manifest()["layers"].back();
}

TEST(StrictManifest, GammaAndBetaAreErrorsThatNameWeightAndBias) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  add_instance_norm(m, "gamma", "beta");
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(
      errors(r),
      (std::vector<std::string>{
          message(m, "/layers/1/weight", "missing; affine is true, so weight and bias are needed"),
          message(m, "/layers/1/bias", "missing; affine is true, so weight and bias are needed"),
          message(m, "/layers/1/beta", "unknown field for instance_norm2d; did you mean \"bias\"?"),
          message(m, "/layers/1/gamma",
                  "unknown field for instance_norm2d; did you mean \"weight\"?"),
      }));
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
  // Allowed, the unknown fields are warnings; the norm still lacks its γ
  // and β, which "affine": true requires.
  const auto allowed = compile(m, true);
  EXPECT_EQ(allowed.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(
      warnings(allowed),
      (std::vector<std::string>{
          message(m, "/layers/1/beta",
                  "unknown field for instance_norm2d, ignored; did you mean \"bias\"?", true),
          message(m, "/layers/1/gamma",
                  "unknown field for instance_norm2d, ignored; did you mean \"weight\"?", true),
      }));
  EXPECT_EQ(errors(allowed).size(), 2u);
}

TEST(StrictManifest, AMisspeltFieldIsAnErrorUnlessAllowed) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3)["padidng"] = 1;
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(errors(r),
            (std::vector<std::string>{message(
                m, "/layers/0/padidng", "unknown field for conv2d; did you mean \"padding\"?")}));
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
  const auto allowed = compile(m, true);
  EXPECT_TRUE(allowed.ok());
  EXPECT_EQ(warnings(allowed),
            (std::vector<std::string>{
                message(m, "/layers/0/padidng",
                        "unknown field for conv2d, ignored; did you mean \"padding\"?", true)}));
  EXPECT_TRUE(std::filesystem::exists(m.path("out.mpsb")));
}

TEST(StrictManifest, OtherSpellingsOfBatchNormFieldsNameTheirField) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  json& bn = m.add_batch_norm("bn", 8);
  bn["moving_mean"] = bn["running_mean"];
  bn["running_variance"] = bn["running_var"];
  bn.erase("running_mean");
  bn.erase("running_var");
  bn["epsilon"] = 1e-3;
  bn["Momentum"] = 0.1;  // case differs
  bn["var"] = "bn.running_var.bin";
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(
      errors(r),
      (std::vector<std::string>{
          message(m, "/layers/1/running_mean", "missing; batch_norm2d needs a tensor file"),
          message(m, "/layers/1/running_var", "missing; batch_norm2d needs a tensor file"),
          message(m, "/layers/1/Momentum",
                  "unknown field for batch_norm2d; did you mean \"momentum\"?"),
          message(m, "/layers/1/epsilon", "unknown field for batch_norm2d; did you mean \"eps\"?"),
          message(m, "/layers/1/moving_mean",
                  "unknown field for batch_norm2d; did you mean \"running_mean\"?"),
          message(m, "/layers/1/running_variance",
                  "unknown field for batch_norm2d; did you mean \"running_var\"?"),
          message(m, "/layers/1/var",
                  "unknown field for batch_norm2d; did you mean \"running_var\"?"),
      }));
}

TEST(StrictManifest, SuggestionsComeFromTheKindsOwnFields) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.add_linear("fc", 8, 4);
  // A conv has no num_groups (group_norm's), a linear no in_channels (a
  // conv's): each is pointed to the field its own kind has; "zzz" has
  // nothing close.
  m.layer(0)["num_groups"] = 2;
  m.layer(0)["zzz"] = 1;
  m.layer(1)["in_channels"] = 8;
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(
      errors(r),
      (std::vector<std::string>{
          message(m, "/layers/0/num_groups", "unknown field for conv2d; did you mean \"groups\"?"),
          message(m, "/layers/0/zzz", "unknown field for conv2d"),
          message(m, "/layers/1/in_channels",
                  "unknown field for linear; did you mean \"in_features\"?"),
      }));
}

TEST(StrictManifest, UnknownTopLevelKeysAreErrors) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.manifest()["author"] = "someone";
  m.manifest()["skiped"] = json::array();
  m.manifest()["Layers"] = json::array();
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(errors(r),
            (std::vector<std::string>{
                message(m, "/Layers", "unknown field for a manifest; did you mean \"layers\"?"),
                message(m, "/author", "unknown field for a manifest"),
                message(m, "/skiped", "unknown field for a manifest; did you mean \"skipped\"?"),
            }));
}

TEST(StrictManifest, UnknownKeysInNestedObjectsAreErrors) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.layer(0)["weight"] = {{"path", "c.weight.bin"}, {"dtpye", "float16"}};
  m.layer(0)["probe"] = {{"input", "in.bin"},
                         {"input_shape", {1, 3, 4, 4}},
                         {"output", "out.bin"},
                         {"output_shape", {1, 8, 2, 2}},
                         {"outputs", "x.bin"}};
  m.manifest()["skipped"] = {{{"name", "a"}, {"type", "SiLU"}, {"reason", "r"}, {"why", "x"}}};
  m.write_manifest();
  const auto r = mpsbc::check_manifest(m.options());
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(errors(r), (std::vector<std::string>{
                           message(m, "/skipped/0/why", "unknown field for a skipped module"),
                           message(m, "/layers/0/probe/outputs",
                                   "unknown field for a probe; did you mean \"output\"?"),
                           message(m, "/layers/0/weight/dtpye",
                                   "unknown field for a tensor; did you mean \"dtype\"?"),
                       }));
}

TEST(StrictManifest, AParameterOfAnotherActivationIsAnError) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.layer(0)["activation"] = "relu";
  m.layer(0)["negative_slope"] = 0.2;  // leaky_relu was meant
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(errors(r),
            (std::vector<std::string>{message(m, "/layers/0/negative_slope",
                                              "a parameter of activation \"leaky_relu\", but the "
                                              "activation is \"relu\"")}));
  const auto allowed = compile(m, true);
  EXPECT_TRUE(allowed.ok());
  EXPECT_EQ(warnings(allowed), (std::vector<std::string>{message(
                                   m, "/layers/0/negative_slope",
                                   "a parameter of activation \"leaky_relu\", but the activation "
                                   "is \"relu\", ignored",
                                   true)}));
}

// ---- γ and β against "affine" (absent: PyTorch's default for the kind).

struct AffineCase {
  const char* what;
  const char* type;
  std::optional<bool> affine;
  bool weight, bias;
  std::vector<std::pair<std::string, std::string>> errors;  // field, text
};

TEST(StrictManifest, NormWeightAndBiasAgreeWithAffine) {
  const std::string needed = "missing; affine is true, so weight and bias are needed";
  const std::string pairs = "missing; weight and bias come in pairs (affine)";
  const std::string not_affine = "given, but affine is false (PyTorch has no weight and bias then)";
  const AffineCase cases[] = {
      {"affine true, both", "instance_norm2d", true, true, true, {}},
      {"affine false, neither", "batch_norm2d", false, false, false, {}},
      {"no affine, neither", "instance_norm2d", std::nullopt, false, false, {}},
      {"no affine, both", "batch_norm2d", std::nullopt, true, true, {}},
      {"affine true, weight only", "instance_norm2d", true, true, false, {{"bias", needed}}},
      {"affine true, neither",
       "group_norm",
       true,
       false,
       false,
       {{"weight", needed}, {"bias", needed}}},
      {"affine false, both",
       "batch_norm2d",
       false,
       true,
       true,
       {{"weight", not_affine}, {"bias", not_affine}}},
      {"affine false, bias only", "instance_norm2d", false, false, true, {{"bias", not_affine}}},
      {"no affine, weight only", "batch_norm2d", std::nullopt, true, false, {{"bias", pairs}}},
      {"no affine, bias only", "group_norm", std::nullopt, false, true, {{"weight", pairs}}},
  };
  for (const AffineCase& c : cases) {
    SCOPED_TRACE(c.what);
    ModelBuilder m;
    m.add_conv("c", 3, 8, 3, 3);
    json layer = {{"name", "n"}, {"type", c.type}};
    if (std::string(c.type) == "group_norm") {
      layer["num_groups"] = 2;
      layer["num_channels"] = 8;
    } else {
      layer["num_features"] = 8;
    }
    if (c.affine) layer["affine"] = *c.affine;
    for (const char* role : {"weight", "bias", "running_mean", "running_var"}) {
      const bool running = role[0] == 'r';
      if (running && std::string(c.type) != "batch_norm2d") continue;
      if (!running && !(role[0] == 'w' ? c.weight : c.bias)) continue;
      m.write_floats(std::string("n.") + role + ".bin", 8);
      layer[role] = std::string("n.") + role + ".bin";
    }
    m.manifest()["layers"].push_back(layer);
    const auto r = compile(m);
    std::vector<std::string> want;
    for (const auto& [field, text] : c.errors)
      want.push_back(message(m, "/layers/1/" + field, text));
    EXPECT_EQ(errors(r), want);
    EXPECT_EQ(r.exit_code, c.errors.empty() ? ExitCode::kOk : ExitCode::kBadInput);
  }
}

TEST(StrictManifest, TrackRunningStatsOnlyAsMpsComputesIt) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.add_batch_norm("bn", 8)["track_running_stats"] = true;
  m.manifest()["layers"].push_back({{"name", "in"},
                                    {"type", "instance_norm2d"},
                                    {"num_features", 8},
                                    {"track_running_stats", false}});
  ASSERT_TRUE(compile(m).ok());
  m.layer(1)["track_running_stats"] = false;
  m.layer(2)["track_running_stats"] = true;
  const auto r = compile(m);
  EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
  EXPECT_EQ(errors(r),
            (std::vector<std::string>{
                message(m, "/layers/1/track_running_stats",
                        "expected true: with false PyTorch normalizes with each batch's statistics "
                        "even in eval mode, and MPS's batch normalization applies running_mean "
                        "and running_var"),
                message(m, "/layers/2/track_running_stats",
                        "expected false: with true PyTorch's eval mode normalizes with stored "
                        "running statistics, and MPS's instance normalization takes none"),
            }));
  m.layer(1)["track_running_stats"] = 1;
  m.layer(2).erase("track_running_stats");
  EXPECT_EQ(errors(compile(m)),
            (std::vector<std::string>{
                message(m, "/layers/1/track_running_stats", "expected true or false, found 1")}));
}

// ---- The exporter's "skipped" list.

TEST(StrictManifest, SkippedModulesAreStoredAndReported) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.manifest()["skipped"] = {
      {{"name", "features.3"}, {"type", "Hardswish"}, {"reason", "MPS has no neuron for it"}},
      {{"name", ""}, {"type", "Net"}, {"reason", "the root"}},
  };
  const auto r = compile(m);
  ASSERT_TRUE(r.ok()) << (r.diagnostics.empty() ? "" : r.diagnostics[0].message);
  ASSERT_EQ(r.skipped.size(), 2u);
  EXPECT_EQ(r.skipped[0].name, "features.3");
  EXPECT_EQ(r.skipped[1].type, "Net");
  const json report = json::parse(mpsbc::report_to_json(r));
  EXPECT_EQ(report["skipped_modules"], json::parse(R"([{"name": "features.3", "type": "Hardswish",
                             "reason": "MPS has no neuron for it"},
                            {"name": "", "type": "Net", "reason": "the root"}])"));
  auto b = mpsb::Bundle::open(m.path("out.mpsb").string(), {.verify_checksums = true});
  ASSERT_TRUE(b.ok()) << b.message();
  ASSERT_EQ(b->skipped_module_count(), 2u);
  EXPECT_EQ(b->skipped_module(0).name, "features.3");
  EXPECT_EQ(b->skipped_module(0).type, "Hardswish");
  EXPECT_EQ(b->skipped_module(0).reason, "MPS has no neuron for it");
  EXPECT_EQ(b->skipped_module(1).name, "");
  EXPECT_EQ(b->skipped_module(1).reason, "the root");
}

TEST(StrictManifest, AManifestWithoutSkippedKeepsItsBundleBytes) {
  // The field is written only when there is something in it.
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  ASSERT_TRUE(compile(m).ok());
  const auto plain = mpsb::testing::read_file(m.path("out.mpsb"));
  m.manifest()["skipped"] = json::array();
  ASSERT_TRUE(compile(m).ok());
  EXPECT_EQ(mpsb::testing::read_file(m.path("out.mpsb")), plain);
  auto b = mpsb::Bundle::open(m.path("out.mpsb").string());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->skipped_module_count(), 0u);
}

TEST(StrictManifest, MalformedSkippedEntriesAreRefused) {
  struct Case {
    const char* what;
    json skipped;
    std::vector<std::pair<std::string, std::string>> errors;
  };
  const Case cases[] = {
      {"not an array",
       {{"name", "a"}},
       {{"/skipped", "expected an array of {name, type, reason} objects, found an object"}}},
      {"entry not an object",
       json::array({"a"}),
       {{"/skipped/0", "expected a {name, type, reason} object, found string \"a\""}}},
      {"missing type and reason",
       json::array({{{"name", "a"}}}),
       {{"/skipped/0/type", "missing; a skipped module has a name, a type and a reason"},
        {"/skipped/0/reason", "missing; a skipped module has a name, a type and a reason"}}},
      {"name not a string",
       json::array({{{"name", 3}, {"type", "SiLU"}, {"reason", "r"}}}),
       {{"/skipped/0/name", "expected a string without NUL characters, found 3"}}},
      {"empty type",
       json::array({{{"name", "a"}, {"type", ""}, {"reason", "r"}}}),
       {{"/skipped/0/type",
         "expected a non-empty string without NUL characters, found string \"\""}}},
      {"empty reason in the second",
       json::array({{{"name", "a"}, {"type", "SiLU"}, {"reason", "r"}},
                    {{"name", "b"}, {"type", "SiLU"}, {"reason", ""}}}),
       {{"/skipped/1/reason",
         "expected a non-empty string without NUL characters, found string \"\""}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ModelBuilder m;
    m.add_conv("c", 3, 8, 3, 3);
    m.manifest()["skipped"] = c.skipped;
    const auto r = compile(m);
    EXPECT_EQ(r.exit_code, ExitCode::kBadInput);
    std::vector<std::string> want;
    for (const auto& [pointer, text] : c.errors) want.push_back(message(m, pointer, text));
    EXPECT_EQ(errors(r), want);
    EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
  }
}

// ---- The mpsbc binary.

struct CliRun {
  int exit_code = -1;
  std::string out, err;
};

CliRun run_mpsbc(const ModelBuilder& m, const std::string& args) {
  const auto out = m.path("stdout.txt"), err = m.path("stderr.txt");
  const std::string cmd = std::string("'") + MPSBC_BINARY + "' " + args + " >'" + out.string() +
                          "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  CliRun r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  const auto o = mpsb::testing::read_file(out), e = mpsb::testing::read_file(err);
  r.out.assign(o.begin(), o.end());
  r.err.assign(e.begin(), e.end());
  return r;
}

std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

TEST(StrictManifestCli, AllowUnknownFieldsOnCompileAndCheck) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3)["padidng"] = 1;
  const auto manifest = m.write_manifest();
  const std::string error =
      message(m, "/layers/0/padidng", "unknown field for conv2d; did you mean \"padding\"?");
  const std::string warning = message(
      m, "/layers/0/padidng", "unknown field for conv2d, ignored; did you mean \"padding\"?", true);
  for (const std::string sub : {"compile", "check"}) {
    SCOPED_TRACE(sub);
    const std::string cmd = sub + " " + q(manifest) + " -o " + q(m.path("out.mpsb"));
    const CliRun strict = run_mpsbc(m, cmd);
    EXPECT_EQ(strict.exit_code, int(ExitCode::kBadInput));
    EXPECT_EQ(strict.err, error + "\nmpsbc: 0 warnings, 1 error\n");
    EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
    const CliRun allowed = run_mpsbc(m, cmd + " --allow-unknown-fields");
    EXPECT_EQ(allowed.exit_code, 0);
    EXPECT_EQ(allowed.err, warning + "\nmpsbc: 1 warning, 0 errors\n");
    std::filesystem::remove(m.path("out.mpsb"));
  }
}

TEST(StrictManifestCli, CompileAndCheckNameTheSkippedModules) {
  ModelBuilder m;
  m.add_conv("c", 3, 8, 3, 3);
  m.manifest()["skipped"] = {
      {{"name", "a"}, {"type", "Hardswish"}, {"reason", "r"}},
      {{"name", "b"}, {"type", "SiLU"}, {"reason", "r"}},
      {{"name", ""}, {"type", "LSTM"}, {"reason", "r"}},
  };
  const auto manifest = m.write_manifest();
  const std::string line =
      "3 modules of the PyTorch model are not in this bundle: a (Hardswish), b (SiLU), <root> "
      "(LSTM)\n";
  const CliRun compiled = run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")));
  EXPECT_EQ(compiled.exit_code, 0) << compiled.err;
  EXPECT_TRUE(compiled.out.ends_with("bytes\n" + line)) << compiled.out;
  const CliRun checked = run_mpsbc(m, "check " + q(manifest));
  EXPECT_EQ(checked.exit_code, 0) << checked.err;
  EXPECT_TRUE(checked.out.ends_with("bytes\n" + line)) << checked.out;
  const CliRun as_json = run_mpsbc(m, "check " + q(manifest) + " --json");
  EXPECT_EQ(json::parse(as_json.out)["skipped_modules"].size(), 3u);
  m.manifest()["skipped"] = {{{"name", "a"}, {"type", "Hardswish"}, {"reason", "r"}}};
  m.write_manifest();
  EXPECT_TRUE(
      run_mpsbc(m, "check " + q(manifest))
          .out.ends_with("\n1 module of the PyTorch model is not in this bundle: a (Hardswish)\n"));
}

}  // namespace
