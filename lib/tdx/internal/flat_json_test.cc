#include "lib/tdx/internal/flat_json.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::tdx::internal {
namespace {

using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using Type = JsonDoc::Type;

TEST(FlatJsonTest, ParsesNestedValues) {
  const std::string text =
      R"( {"a": [1, -2, 3.5, "x", true, false, null, {}], "b": {"c": "d"}, "e": []} )";
  PML_ASSERT_OK_AND_ASSIGN(JsonDoc doc, JsonDoc::Parse(text));
  const auto& root = doc.node(JsonDoc::kRoot);
  ASSERT_EQ(root.type, Type::kObject);
  EXPECT_EQ(root.size, 3u);
  const int64_t a = doc.Find(JsonDoc::kRoot, "a");
  ASSERT_GE(a, 0);
  const auto& arr = doc.node(static_cast<uint32_t>(a));
  ASSERT_EQ(arr.type, Type::kArray);
  ASSERT_EQ(arr.size, 8u);
  uint32_t c = arr.first_child;
  EXPECT_EQ(doc.node(c).integer, 1);
  c = doc.node(c).next_sibling;
  EXPECT_EQ(doc.node(c).integer, -2);
  c = doc.node(c).next_sibling;
  EXPECT_EQ(doc.node(c).type, Type::kNumber);
  EXPECT_EQ(doc.node(c).text, "3.5");
  c = doc.node(c).next_sibling;
  EXPECT_EQ(doc.node(c).text, "x");
  c = doc.node(c).next_sibling;
  EXPECT_TRUE(doc.node(c).boolean);
  const int64_t b = doc.Find(JsonDoc::kRoot, "b");
  ASSERT_GE(b, 0);
  const int64_t cc = doc.Find(static_cast<uint32_t>(b), "c");
  ASSERT_GE(cc, 0);
  EXPECT_EQ(doc.node(static_cast<uint32_t>(cc)).text, "d");
  EXPECT_EQ(doc.Find(JsonDoc::kRoot, "zz"), -1);
  EXPECT_EQ(doc.node(static_cast<uint32_t>(doc.Find(JsonDoc::kRoot, "e"))).size, 0u);
}

TEST(FlatJsonTest, DecodesEscapes) {
  PML_ASSERT_OK_AND_ASSIGN(JsonDoc doc,
                           JsonDoc::Parse(R"({"k\"ey": "a\\b\/c\n\u00e9\ud83d\ude00"})"));
  const int64_t i = doc.Find(JsonDoc::kRoot, "k\"ey");
  ASSERT_GE(i, 0);
  EXPECT_EQ(doc.node(static_cast<uint32_t>(i)).text, "a\\b/c\n\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(FlatJsonTest, IntegerRange) {
  PML_ASSERT_OK_AND_ASSIGN(JsonDoc doc, JsonDoc::Parse(
      R"([9223372036854775807, -9223372036854775808, 9223372036854775808, 1e3])"));
  uint32_t c = doc.node(JsonDoc::kRoot).first_child;
  EXPECT_EQ(doc.node(c).type, Type::kInteger);
  EXPECT_EQ(doc.node(c).integer, INT64_MAX);
  c = doc.node(c).next_sibling;
  EXPECT_EQ(doc.node(c).type, Type::kInteger);
  EXPECT_EQ(doc.node(c).integer, INT64_MIN);
  c = doc.node(c).next_sibling;
  EXPECT_EQ(doc.node(c).type, Type::kNumber);
  c = doc.node(c).next_sibling;
  EXPECT_EQ(doc.node(c).type, Type::kNumber);
}

TEST(FlatJsonTest, RejectsMalformedDocuments) {
  struct Case {
    std::string text;
    const char* want;
  };
  const Case cases[] = {
      {"", "unexpected end"},
      {"{\"a\":1,\"a\":2}", "duplicate member"},
      {"{\"a\":1} x", "trailing bytes"},
      {"[01]", "leading zero"},
      {"[1.]", "bad fraction"},
      {"[1e]", "bad exponent"},
      {"[-]", "bad number"},
      {"[\"a\nb\"]", "control character"},
      {"[\"\\x\"]", "bad escape"},
      {"[\"\\ud800\"]", "lone high surrogate"},
      {"[\"\\udc00\"]", "lone low surrogate"},
      {"[\"abc", "unterminated string"},
      {"[tru]", "bad literal"},
      {"{\"a\" 1}", "expected ':'"},
      {"{\"a\":1,}", "expected a member name"},
      {"[1 2]", "expected ',' or ']'"},
      {std::string(100, '['), "nesting too deep"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text.substr(0, 40));
    EXPECT_THAT(JsonDoc::Parse(c.text), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
  EXPECT_THAT(JsonDoc::Parse("[1,2,3,4]", 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too many values")));
}

TEST(FlatJsonTest, ManyMembersStillDetectDuplicates) {
  std::string text = "{";
  for (int i = 0; i < 100; ++i) text += "\"k" + std::to_string(i) + "\":0,";
  EXPECT_THAT(JsonDoc::Parse(text + "\"k99\":1}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  EXPECT_THAT(JsonDoc::Parse(text + "\"k100\":1}"), ::pml::testing::IsOk());
}

}  // namespace
}  // namespace pml::tdx::internal
