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
                       "groups 4\n");
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

TEST(CliTest, QuietHidesWarnings) {
  ModelBuilder m;
  m.add_conv("c", 8, 8, 1, 1, 4);  // 2 channels per group: MPS lint warning
  const auto manifest = m.write_manifest();
  const auto loud = run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")));
  EXPECT_EQ(loud.exit_code, 0);
  EXPECT_NE(loud.err.find("/layers/0/groups: warning: "), std::string::npos) << loud.err;
  const auto quiet =
      run_mpsbc(m, "compile " + q(manifest) + " -o " + q(m.path("out.mpsb")) + " --quiet");
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.err, "");
  EXPECT_EQ(quiet.out, "");
}

}  // namespace
