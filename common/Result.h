// Errors as values: every fallible operation in normal flow returns Result<T>.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace tether {

// A closed set of error kinds. Each has a stable snake_case name (errc_name) that is part of
// the wire protocol: UP error replies and REST error bodies carry it.
enum class Errc {
  kInvalidArgument,  // a caller passed something malformed
  kUnknownType,      // a message/datagram type this side does not know
  kMissingField,     // a required field is absent
  kWrongType,        // a field has the wrong JSON type
  kBadValue,         // a field has the right type but a value out of range or malformed
  kTooLarge,         // a size limit was exceeded (message, string, array)
  kTooDeep,          // nesting limit exceeded
  kDuplicateKey,     // the same object key twice
  kSyntax,           // not parseable at all
  kTruncated,        // input ended early
  kTrailingData,     // input continued after the end of a well-formed item
  kBadMagic,
  kBadVersion,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kConflict,
  kTimeout,
  kUnavailable,
  kIo,
  kCrypto,
  kInternal,
};

[[nodiscard]] std::string_view errc_name(Errc code) noexcept;

struct Error {
  Errc code = Errc::kInternal;
  std::string message;

  // "message" alone reads best in logs and CLI output; the code is for machines.
  [[nodiscard]] const std::string& what() const noexcept { return message; }

  // Prefixes context ("reading /etc/x.conf: ") while keeping the code.
  [[nodiscard]] Error context(std::string_view prefix) const {
    return Error{code, std::string(prefix) + ": " + message};
  }
};

[[nodiscard]] inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(const T& value) : storage_(value) {}          // NOLINT(google-explicit-constructor)
  Result(T&& value) : storage_(std::move(value)) {}    // NOLINT(google-explicit-constructor)
  Result(Error error) : storage_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  // Implicit conversion from anything T can be made of (e.g. a string literal for
  // Result<std::string>), but never from an Error or another Result.
  template <typename U>
  static constexpr bool kConvertsToValue =
      std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, T> &&
      !std::is_same_v<std::decay_t<U>, Error> && !std::is_same_v<std::decay_t<U>, Result>;

  // NOLINTBEGIN(bugprone-forwarding-reference-overload,google-explicit-constructor)
  template <typename U>
  requires kConvertsToValue<U> Result(U&& value)
      : storage_(std::in_place_index<0>, std::forward<U>(value)) {}
  // NOLINTEND(bugprone-forwarding-reference-overload,google-explicit-constructor)

  [[nodiscard]] bool ok() const noexcept { return storage_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  [[nodiscard]] T& value() & {
    assert(ok());
    return std::get<0>(storage_);
  }
  [[nodiscard]] const T& value() const& {
    assert(ok());
    return std::get<0>(storage_);
  }
  [[nodiscard]] T&& value() && {
    assert(ok());
    return std::get<0>(std::move(storage_));
  }
  [[nodiscard]] const Error& error() const& {
    assert(!ok());
    return std::get<1>(storage_);
  }
  [[nodiscard]] Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(storage_));
  }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  template <typename U>
  [[nodiscard]] T value_or(U&& fallback) const& {
    return ok() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> storage_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  [[nodiscard]] bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  [[nodiscard]] const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  [[nodiscard]] Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

[[nodiscard]] inline Status ok_status() {
  return Status{};
}

}  // namespace tether

// Propagates an error from an expression returning Result<...>/Status to the caller.
#define TETHER_TRY(expr)                            \
  do {                                              \
    auto&& tether_try_result_ = (expr);             \
    if (!tether_try_result_.ok()) {                 \
      return std::move(tether_try_result_).error(); \
    }                                               \
  } while (0)

#define TETHER_CONCAT_INNER(a, b) a##b
#define TETHER_CONCAT(a, b) TETHER_CONCAT_INNER(a, b)
// Declares `lhs` from the value of a Result, or returns its error.
#define TETHER_ASSIGN_OR_RETURN(lhs, expr) \
  TETHER_ASSIGN_OR_RETURN_IMPL(TETHER_CONCAT(tether_result_, __LINE__), lhs, expr)
#define TETHER_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) {                                   \
    return std::move(tmp).error();                   \
  }                                                  \
  lhs = std::move(tmp).value()
