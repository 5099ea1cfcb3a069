// One way to fail: an Error names what was wrong and why, and a Result<T> is either a T or an
// Error. Every decoder of untrusted bytes in the core (events, ingest, fetch, query) and every
// parser of an adapter's options returns one, so a caller reads failures one way everywhere.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "mqds/assert.hpp"

namespace mqds {

struct Error {
  // What was wrong: the JSON path of a field ("KnownFileInfos.<hash>.Size"), an option
  // ("plugin_opt_replicas", "--capacity"), or "" for the input as a whole.
  std::string field;
  // Why, in words: "missing", "must be a string", "must be an integer from 1 to 16, not 'x'".
  std::string problem;

  // "field: problem", or the problem alone.
  std::string to_string() const { return field.empty() ? problem : field + ": " + problem; }
  friend bool operator==(const Error&, const Error&) = default;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    MQDS_ASSERT(ok());
    return std::get<0>(state_);
  }
  const T& value() const& {
    MQDS_ASSERT(ok());
    return std::get<0>(state_);
  }
  T&& value() && {
    MQDS_ASSERT(ok());
    return std::get<0>(std::move(state_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const {
    MQDS_ASSERT(!ok());
    return std::get<1>(state_);
  }

 private:
  std::variant<T, Error> state_;
};

}  // namespace mqds
