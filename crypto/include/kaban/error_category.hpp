// ErrcCategory: the std::error_category behind each component's errc enum.
#pragma once

#include <string>
#include <system_error>

namespace kaban {

/// A category named `name` whose messages come from `describe`, a function over the
/// component's enum. Define one as a function-local static in the component's error.cpp.
template <class Errc>
class ErrcCategory final : public std::error_category {
 public:
  using Describe = const char* (*)(Errc) noexcept;

  ErrcCategory(const char* name, Describe describe) noexcept : name_(name), describe_(describe) {}
  const char* name() const noexcept override { return name_; }
  std::string message(int ev) const override { return describe_(static_cast<Errc>(ev)); }

 private:
  const char* name_;
  Describe describe_;
};

}  // namespace kaban
