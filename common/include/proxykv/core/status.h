// Status and Result<T>: the error convention of the request path.
//
// Start-up and configuration code may throw (ConfigError) and fail fast with a message naming the file or key
// at fault; everything that handles input from outside a process (requests, frames, files given at run time)
// returns a Status or Result<T>, and no exception crosses a handler, a service boundary or a thread boundary.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace proxykv {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is malformed (bad request, bad file, bad frame)
  kNotFound,         // a named thing does not exist (file, model, context id)
  kOutOfRange,       // a size or index outside what is allowed (too long, too big)
  kUnimplemented,    // a valid value this build does not support (architecture, dtype)
  kFailedPrecondition,
  kResourceExhausted,  // overload, cache full, memory
  kUnavailable,        // a peer is down or not reachable
  kDeadlineExceeded,
  kInternal,  // a bug: an invariant of our own broke
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: what went wrong"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string msg) {
  return {StatusCode::kInvalidArgument, std::move(msg)};
}
inline Status not_found(std::string msg) {
  return {StatusCode::kNotFound, std::move(msg)};
}
inline Status out_of_range(std::string msg) {
  return {StatusCode::kOutOfRange, std::move(msg)};
}
inline Status unimplemented(std::string msg) {
  return {StatusCode::kUnimplemented, std::move(msg)};
}
inline Status failed_precondition(std::string msg) {
  return {StatusCode::kFailedPrecondition, std::move(msg)};
}
inline Status internal_error(std::string msg) {
  return {StatusCode::kInternal, std::move(msg)};
}

// Thrown only on start-up/configuration paths, and by Result::value() on misuse.
class ProxykvError : public std::runtime_error {
 public:
  explicit ProxykvError(const Status& status) : std::runtime_error(status.to_string()), status_(status) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.is_ok()) status_ = internal_error("Result constructed from an OK status without a value");
  }

  bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const { return status_; }

  // Access to the value; throws ProxykvError carrying the status when there is none.
  T& value() & {
    if (!value_) throw ProxykvError(status_);
    return *value_;
  }
  const T& value() const& {
    if (!value_) throw ProxykvError(status_);
    return *value_;
  }
  T&& value() && {
    if (!value_) throw ProxykvError(status_);
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

// Unwraps a Result on a start-up path: returns the value or throws with the status.
template <typename T>
T value_or_throw(Result<T> result) {
  return std::move(result).value();
}
inline void throw_if_error(const Status& status) {
  if (!status.is_ok()) throw ProxykvError(status);
}

}  // namespace proxykv

#define PROXYKV_CONCAT_INNER(a, b) a##b
#define PROXYKV_CONCAT(a, b) PROXYKV_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when it is an error.
#define PROXYKV_RETURN_IF_ERROR(expr)             \
  do {                                            \
    ::proxykv::Status _pkv_status = (expr);       \
    if (!_pkv_status.is_ok()) return _pkv_status; \
  } while (0)

// PROXYKV_ASSIGN_OR_RETURN(auto x, make_x()): binds the value or returns the error status.
#define PROXYKV_ASSIGN_OR_RETURN(lhs, expr) \
  PROXYKV_ASSIGN_OR_RETURN_IMPL(PROXYKV_CONCAT(_pkv_result_, __LINE__), lhs, expr)
#define PROXYKV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.is_ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
