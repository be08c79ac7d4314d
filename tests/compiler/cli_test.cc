// The mpsbc binary: exit codes, stderr messages, --json.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "model_builder.h"

namespace {

using mpsb::testing::ModelBuilder;

struct Run {
  int exit_code = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  const auto bytes = mpsb::testing::read_file(p);
  return {bytes.begin(), bytes.end()};
}

// Runs mpsbc with `args` (already shell-quoted), capturing both streams.
Run run_mpsbc(const ModelBuilder& m, const std::string& args) {
  const auto out = m.path("stdout.txt"), err = m.path("stderr.txt");
  const std::string cmd = std::string("'") + MPSBC_BINARY + "' " + args + " >'" + out.string() +
                          "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  Run r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

TEST(CliTest, CompileWritesBundle) {
  ModelBuilder m;
  m.add_conv("c", 4, 8, 3, 3);
  const auto manifest = m.write_manifest();
  const auto r =
      run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")) + " --jobs 2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("wrote"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(m.path("out.mpsb")));
}

TEST(CliTest, BadManifestExitsWithBadInputAndNamesThePlace) {
  ModelBuilder m;
  m.add_conv("c", 6, 8, 3, 3)["groups"] = 4;
  const auto manifest = m.write_manifest();
  const auto r = run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")));
  EXPECT_EQ(r.exit_code, int(mpsbc::ExitCode::kBadInput));
  EXPECT_EQ(r.err, manifest.string() +
                       ": /layers/0/groups: in_channels 6 is not divisible by "
                       "groups 4\n"
                       "mpsbc: 0 warnings, 1 error\n");
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
}

TEST(CliTest, UsageErrorsExitTwo) {
  ModelBuilder m;
  m.add_conv("c", 4, 8, 3, 3);
  const auto manifest = m.write_manifest();
  EXPECT_EQ(run_mpsbc(m, "compile " + q(manifest)).exit_code, 2);  // no -o
  EXPECT_EQ(run_mpsbc(m, "").exit_code, 2);                        // no subcommand
  EXPECT_EQ(run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("x.mpsb")) +
                             " --tensor-alignment 100")
                .exit_code,
            2);
  EXPECT_EQ(run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("x.mpsb")) + " --jobs -1")
                .exit_code,
            2);
  EXPECT_FALSE(std::filesystem::exists(m.path("x.mpsb")));
  EXPECT_EQ(run_mpsbc(m, "--help").exit_code, 0);
}

TEST(CliTest, CheckWritesNothingAndJsonReports) {
  ModelBuilder m;
  m.add_conv("c", 4, 8, 3, 3);
  const auto manifest = m.write_manifest();
  const auto r = run_mpsbc(m, "check " + q(manifest) + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["layers"][0]["name"], "c");
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));

  std::filesystem::resize_file(m.path("c.weight.bin"), 12);
  const auto bad = run_mpsbc(m, "check " + q(manifest) + " --json");
  EXPECT_EQ(bad.exit_code, int(mpsbc::ExitCode::kBadInput));
  const auto jb = nlohmann::json::parse(bad.out);
  EXPECT_FALSE(jb["ok"].get<bool>());
  EXPECT_EQ(jb["diagnostics"][0]["pointer"], "/layers/0/weight");
  EXPECT_NE(bad.err.find("expected 1152 bytes (8×4×3×3 float32), found 12"), std::string::npos)
      << bad.err;
}

// Misspelt fields are warnings only with this flag (errors by default:
// strict_manifest_test.cc).
constexpr const char* kAllow = " --allow-unknown-fields";

TEST(CliTest, QuietHidesWarnings) {
  ModelBuilder m;
  m.add_conv("c", 8, 8, 1, 1);
  m.layer(0)["padidng"] = 1;  // misspelt: a warning with --allow-unknown-fields
  const auto manifest = m.write_manifest();
  const auto loud =
      run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")) + kAllow);
  EXPECT_EQ(loud.exit_code, 0);
  EXPECT_NE(loud.err.find("/layers/0/padidng: warning: "), std::string::npos) << loud.err;
  const auto quiet =
      run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")) + " --quiet" + kAllow);
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.err, "");
  EXPECT_EQ(quiet.out, "");
}

TEST(CliTest, WarningsAndErrorsAreCountedAtTheEnd) {
  ModelBuilder m;
  m.add_conv("c", 8, 8, 1, 1);
  m.layer(0)["padidng"] = 1;  // misspelt: a warning with --allow-unknown-fields
  m.add_conv("d", 8, 8, 1, 1);
  m.layer(1)["strdie"] = 1;
  const auto manifest = m.write_manifest();
  const auto warned =
      run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")) + kAllow);
  EXPECT_EQ(warned.exit_code, 0);
  EXPECT_TRUE(warned.err.ends_with("\nmpsbc: 2 warnings, 0 errors\n")) << warned.err;
  m.layer(1)["groups"] = 3;  // 8 is not divisible by 3: two errors
  m.write_manifest();
  const auto failed = run_mpsbc(m, "check " + q(manifest) + kAllow);
  EXPECT_EQ(failed.exit_code, int(mpsbc::ExitCode::kBadInput));
  EXPECT_TRUE(failed.err.ends_with("\nmpsbc: 2 warnings, 2 errors\n")) << failed.err;
  // --quiet keeps the count only when there are errors.
  const auto quiet = run_mpsbc(m, "check " + q(manifest) + " -q" + kAllow);
  EXPECT_EQ(quiet.err.find("warning:"), std::string::npos) << quiet.err;
  EXPECT_TRUE(quiet.err.ends_with("\nmpsbc: 2 warnings, 2 errors\n")) << quiet.err;
}

// A conv MPS refuses: an error naming the layer and --legalize; with the
// flag, the cost of the dense form on stdout (not with --quiet).
TEST(CliTest, LegalizeIsNamedByTheErrorAndPrintsTheCost) {
  ModelBuilder m;
  m.add_conv("c", 8, 8, 1, 1, 4);  // 2 channels per group
  const auto manifest = m.write_manifest();
  const std::string out = " -o " + q(m.path("out.mpsb"));
  const auto refused = run_mpsbc(m, "compile " + q(manifest) + out);
  EXPECT_EQ(refused.exit_code, int(mpsbc::ExitCode::kBadInput));
  EXPECT_NE(refused.err.find("/layers/0/groups: layer 'c': grouped conv with 2 input and 2 "
                             "output channels per group"),
            std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("--legalize"), std::string::npos) << refused.err;
  const auto legal = run_mpsbc(m, "compile " + q(manifest) + out + " --legalize");
  EXPECT_EQ(legal.exit_code, 0) << legal.err;
  // [8][1][1][8] stored for [8][2][1][1]: 48 zeros, 4 bytes each.
  EXPECT_NE(legal.out.find("legalized c (groups 4 -> dense): +192 weight bytes, +48 "
                           "multiply-adds per output position\n"),
            std::string::npos)
      << legal.out;
  const auto quiet = run_mpsbc(m, "compile " + q(manifest) + out + " --legalize -q");
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.out, "");
}

TEST(CliTest, HelpShowsExamplesAndExitCodesForEverySubcommand) {
  ModelBuilder m;
  for (const char* cmd : {"--help", "compile --help", "check --help", "kinds --help"}) {
    SCOPED_TRACE(cmd);
    const auto r = run_mpsbc(m, cmd);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Examples:\n  mpsbc "), std::string::npos) << r.out;
    for (const char* code : {"Exit codes:", "  0  ok", "  2  bad command line", "  3  bad input",
                             "  4  I/O error", "  5  --check"}) {
      EXPECT_NE(r.out.find(code), std::string::npos) << code;
    }
  }
}

TEST(CliTest, CheckRunsTheChecksOfCompileWithItsOptions) {
  ModelBuilder m;
  m.add_conv("c", 4, 8, 3, 3);
  const auto manifest = m.write_manifest();
  // The output path, checked as compile would and not written.
  std::filesystem::create_directory(m.path("folder"));
  EXPECT_EQ(run_mpsbc(m, "check " + q(manifest) + " -o " + q(m.path("folder"))).exit_code, 2);
  const auto self = run_mpsbc(m, "check " + q(manifest) + " -o " + q(manifest));
  EXPECT_EQ(self.exit_code, 2);
  EXPECT_NE(self.err.find("is the manifest itself"), std::string::npos) << self.err;
  const auto ok = run_mpsbc(m, "check " + q(manifest) + " -o " + q(m.path("out.mpsb")));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
  // The alignments, as compile takes them.
  EXPECT_EQ(run_mpsbc(m, "check " + q(manifest) + " --tensor-alignment 100").exit_code, 2);
  const auto big = run_mpsbc(m, "check " + q(manifest) + " --json --segment-alignment 65536");
  EXPECT_EQ(big.exit_code, 0) << big.err;
  EXPECT_EQ(nlohmann::json::parse(big.out)["segment_offset"], 65536);
  EXPECT_EQ(run_mpsbc(m, "check " + q(manifest) + " --frobnicate").exit_code, 2);
  EXPECT_EQ(run_mpsbc(m, "check").exit_code, 2);
}

TEST(CliTest, ProgressCallbackCountsEveryStoredByteOnce) {
  ModelBuilder m;
  for (int i = 0; i < 6; ++i) m.add_conv("c" + std::to_string(i), 8, 8, 3, 3);
  m.write_manifest();
  mpsbc::CompileOptions options = m.options();
  options.jobs = 3;
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  options.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
  const mpsbc::CompileReport report = mpsbc::compile(options);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(calls.size(), 12u);  // one per tensor: six weights, six biases
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, report.tensor_bytes);
    if (i > 0) {
      EXPECT_GT(calls[i].first, calls[i - 1].first);
    }
  }
  EXPECT_EQ(calls.back().first, report.tensor_bytes);
  // No terminal here: the CLI draws no bar, and stderr stays empty.
  const auto r =
      run_mpsbc(m, "compile " + q(m.path("manifest.json")) + " -o " + q(m.path("cli.mpsb")));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "");
}

}  // namespace
