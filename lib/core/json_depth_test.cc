#include "lib/core/json_depth.h"

#include <string>

#include "gtest/gtest.h"

namespace pml::core {
namespace {

TEST(JsonDepthWithinTest, CountsObjectsAndArraysTogether) {
  EXPECT_TRUE(JsonDepthWithin(R"({"a":[{"b":1}]})", 3));
  EXPECT_FALSE(JsonDepthWithin(R"({"a":[{"b":1}]})", 2));
}

TEST(JsonDepthWithinTest, ScalarsAndEmptyTextHaveDepthZero) {
  EXPECT_TRUE(JsonDepthWithin("", 0));
  EXPECT_TRUE(JsonDepthWithin(R"("text")", 0));
  EXPECT_FALSE(JsonDepthWithin("[]", 0));
}

TEST(JsonDepthWithinTest, SiblingsDoNotAddUp) {
  EXPECT_TRUE(JsonDepthWithin(R"([[1],[2],{"a":[3]}])", 3));
  EXPECT_FALSE(JsonDepthWithin(R"([[1],[2],{"a":[3]}])", 2));
}

TEST(JsonDepthWithinTest, IgnoresBracketsInsideStrings) {
  EXPECT_TRUE(JsonDepthWithin(R"({"a":"[[[[{{{{"})", 1));
  // An escaped quote does not end the string, so the brackets after it are still text.
  EXPECT_TRUE(JsonDepthWithin(R"({"a":"\"[[[["})", 1));
  // An escaped backslash does: the bracket after the closing quote counts.
  EXPECT_FALSE(JsonDepthWithin(R"({"a":"\\","b":[1]})", 1));
}

TEST(JsonDepthWithinTest, RefusesDeepInputEarly) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(JsonDepthWithin(deep, 64));
  EXPECT_TRUE(JsonDepthWithin(deep, 100000));
}

}  // namespace
}  // namespace pml::core
