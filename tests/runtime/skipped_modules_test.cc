// Bundle.skipped_modules: the modules of the PyTorch model a bundle lacks,
// through the C++ accessor and the C API, and the checker's refusal of
// crafted entries (a string left out, an empty type or reason, a NUL), each
// with its error code and whole message.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

using testing::BundleSpec;
using testing::SkippedSpec;

BundleSpec with_skipped(std::vector<SkippedSpec> skipped) {
  BundleSpec s;
  s.layers.push_back(testing::conv_layer("c", 4, 8, 3));
  s.skipped = std::move(skipped);
  return s;
}

TEST(SkippedModules, NoneWhenTheFieldIsAbsent) {
  const auto bytes = testing::build_bundle(with_skipped({}));
  auto b = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(b.ok()) << b.message();
  EXPECT_EQ(b->skipped_module_count(), 0u);
}

TEST(SkippedModules, GivenInOrderByTheAccessorAndTheCApi) {
  const auto bytes = testing::build_bundle(with_skipped({
      {"features.3", "Hardswish", "MPS has no neuron for Hardswish"},
      {"", "LSTM", "no mapping"},  // the model itself
  }));
  auto b = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(b.ok()) << b.message();
  ASSERT_EQ(b->skipped_module_count(), 2u);
  EXPECT_EQ(b->skipped_module(0).name, "features.3");
  EXPECT_EQ(b->skipped_module(0).type, "Hardswish");
  EXPECT_EQ(b->skipped_module(0).reason, "MPS has no neuron for Hardswish");
  EXPECT_EQ(b->skipped_module(1).name, "");
  EXPECT_EQ(b->skipped_module(1).type, "LSTM");

  testing::TempDir dir;
  const std::string path = (dir.path() / "s.mpsb").string();
  testing::write_file(path, bytes.data(), bytes.size());
  mpsb_bundle* c = nullptr;
  ASSERT_EQ(mpsb_bundle_open(path.c_str(), 0, &c, nullptr, 0), MPSB_OK);
  EXPECT_EQ(mpsb_bundle_skipped_module_count(c), 2u);
  const char *name = nullptr, *type = nullptr, *reason = nullptr;
  EXPECT_EQ(mpsb_bundle_skipped_module(c, 0, &name, &type, &reason), 1);
  EXPECT_STREQ(name, "features.3");
  EXPECT_STREQ(type, "Hardswish");
  EXPECT_STREQ(reason, "MPS has no neuron for Hardswish");
  EXPECT_EQ(mpsb_bundle_skipped_module(c, 1, &name, nullptr, nullptr), 1);
  EXPECT_STREQ(name, "");
  EXPECT_EQ(mpsb_bundle_skipped_module(c, 2, &name, &type, &reason), 0);
  EXPECT_STREQ(name, "");
  EXPECT_STREQ(type, "");
  EXPECT_STREQ(reason, "");
  mpsb_bundle_free(c);
  EXPECT_EQ(mpsb_bundle_skipped_module_count(nullptr), 0u);
  EXPECT_EQ(mpsb_bundle_skipped_module(nullptr, 0, &name, &type, &reason), 0);
}

TEST(SkippedModules, CraftedEntriesAreRefused) {
  const std::string nul("a\0b", 3);
  struct Case {
    const char* what;
    SkippedSpec entry;
  };
  const Case cases[] = {
      {"no name", {std::nullopt, "Hardswish", "r"}},
      {"no type", {"a", std::nullopt, "r"}},
      {"no reason", {"a", "Hardswish", std::nullopt}},
      {"nothing", {std::nullopt, std::nullopt, std::nullopt}},
      {"empty type", {"a", "", "r"}},
      {"empty reason", {"a", "Hardswish", ""}},
      {"NUL in the name", {nul, "Hardswish", "r"}},
      {"NUL in the type", {"a", nul, "r"}},
      {"NUL in the reason", {"a", "Hardswish", nul}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // The bad entry second: the check looks at every entry, not the first.
    const auto bytes = testing::build_bundle(with_skipped({{"ok", "SiLU", "r"}, c.entry}));
    auto b = Bundle::from_memory(bytes.data(), bytes.size());
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.error(), Error::kBadField);
    EXPECT_EQ(b.message(),
              "<memory>: skipped module 1 lacks its name, type or reason, or one of them holds "
              "a NUL");
  }
}

}  // namespace
}  // namespace mpsb
