#include "proxykv/core/status.h"

#include <gtest/gtest.h>

namespace proxykv {
namespace {

Result<int> parse_positive(int x) {
  if (x <= 0) return invalid_argument("x must be positive, got " + std::to_string(x));
  return x;
}

Status double_it(int x, int* out) {
  PROXYKV_ASSIGN_OR_RETURN(int v, parse_positive(x));
  *out = 2 * v;
  return Status::ok();
}

TEST(Status, ToStringNamesCode) {
  EXPECT_EQ(Status::ok().to_string(), "OK");
  EXPECT_EQ(not_found("model 'x'").to_string(), "NOT_FOUND: model 'x'");
}

TEST(Result, ValueAndError) {
  auto good = parse_positive(3);
  ASSERT_TRUE(good.is_ok());
  EXPECT_EQ(*good, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THROW(bad.value(), ProxykvError);
}

TEST(Result, AssignOrReturnPropagates) {
  int out = 0;
  EXPECT_TRUE(double_it(4, &out).is_ok());
  EXPECT_EQ(out, 8);
  Status s = double_it(0, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("positive"), std::string::npos);
}

TEST(Result, OkStatusWithoutValueIsInternal) {
  Result<int> r{Status::ok()};
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace proxykv
