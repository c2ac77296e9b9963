// A small value-or-error type (std::expected is C++23; this project targets C++20).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace kindling {

// An error of one module: a module-specific code, the errno that caused it (0 if none), and
// context naming what failed (a file, a register, a JSON path). `Code` needs a
// `const char* to_string(Code)` found by argument-dependent lookup.
template <typename Code>
struct Error {
  Code code{};
  int sys_errno = 0;
  std::string context;

  // One readable line: "context: what (strerror)".
  std::string message() const {
    std::string out = context;
    const char* what = to_string(code);
    if (what != nullptr && *what != '\0') {
      if (!out.empty()) out += ": ";
      out += what;
    }
    if (sys_errno != 0) {
      out += " (";
      out += std::strerror(sys_errno);
      out += ")";
    }
    return out;
  }
};

// Wraps an error value so that it converts into any Result with that error type.
template <typename E>
struct Unexpected {
  E error;
};

template <typename E>
Unexpected(E) -> Unexpected<E>;

// Builds an Unexpected<Error<Code>> for `return fail(Code::kX, errno, "ctx");`.
template <typename Code>
Unexpected<Error<Code>> fail(Code code, int sys_errno = 0, std::string context = {}) {
  return Unexpected<Error<Code>>{Error<Code>{code, sys_errno, std::move(context)}};
}

// Builds an Unexpected from errno as it is now.
template <typename Code>
Unexpected<Error<Code>> fail_errno(Code code, std::string context = {}) {
  return fail(code, errno, std::move(context));
}

// Holds either a T or an E. Must be used: ignoring a Result is a compile warning.
template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  Result(const T& value) : v_(std::in_place_index<0>, value) {}
  Result(T&& value) : v_(std::in_place_index<0>, std::move(value)) {}
  template <typename U>
  Result(Unexpected<U>&& e) : v_(std::in_place_index<1>, E(std::move(e.error))) {}

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

  // Re-wraps the error for propagation: `if (!r) return r.take_error();`
  Unexpected<E> take_error() { return Unexpected<E>{std::get<1>(std::move(v_))}; }

 private:
  std::variant<T, E> v_;
};

// Success carries no value.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  template <typename U>
  Result(Unexpected<U>&& e) : err_(E(std::move(e.error))), ok_(false) {}

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const {}

  const E& error() const& { return err_; }
  E&& error() && { return std::move(err_); }
  Unexpected<E> take_error() { return Unexpected<E>{std::move(err_)}; }

 private:
  E err_{};
  bool ok_ = true;
};

}  // namespace kindling
