// Result<T>: how every Kaban component returns an expected failure (see docs/errors.md).
#pragma once

#include <system_error>

#include <boost/outcome/result.hpp>
#include <boost/outcome/try.hpp>

namespace kaban {

namespace outcome = boost::outcome_v2;

/// A value or a std::error_code. Accessing value() of a failed result throws
/// (that is a broken invariant, not an expected failure).
template <class T>
using Result = outcome::result<T, std::error_code>;

/// Shorthand for `return kaban::ok();` from a Result<void> function.
inline auto ok() {
  return outcome::success();
}

}  // namespace kaban

/// KABAN_TRY(var, expr): evaluate a Result, return its error from the enclosing function,
/// otherwise bind its value to `var`. KABAN_TRYV(expr) for Result<void>.
#define KABAN_TRY(...) BOOST_OUTCOME_TRY(__VA_ARGS__)
#define KABAN_TRYV(...) BOOST_OUTCOME_TRYV(__VA_ARGS__)
