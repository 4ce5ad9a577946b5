// concur/pickle.hpp: a safe reader of Python pickle data, and JSON output of what it read.
//
// Reads what Python's pickler writes, at protocols 0 to 5, for data made of None, bool,
// int (any size), float, str, bytes, tuple, list and dict: every opcode the pickler emits
// for those, including the memo (shared references), frames, and the `_codecs.encode` /
// `bytes()` reductions protocols 0-2 use for bytes. It never executes anything: every
// other global, REDUCE of anything but those two, object construction (INST, OBJ, NEWOBJ,
// BUILD), extension codes, persistent ids and out-of-band buffers are refused with a
// PickleError naming the opcode. Truncated input, oversized lengths, unhashable dict
// keys, and structures nested or shared too much to print are refused the same way.
//
// JSON output matches Python's json.dumps(value) with default arguments (", " and ": "
// separators, ensure_ascii escapes, NaN/Infinity, non-str keys converted as Python does),
// with one extension: bytes, which json.dumps refuses, are written as a string of their
// latin-1 characters.
//
// Every function here is thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "concur/errors.hpp"

namespace concur::pickle {

// The input is not a pickle this reader accepts (corrupt, truncated, unsafe, or of a
// type outside the supported set).
class PickleError : public SerializationError {
 public:
  using SerializationError::SerializationError;
};

// Limits applied while reading.
struct LoadOptions {
  // Deepest nesting of containers accepted.
  std::size_t max_depth = 1000;
  // Largest memo key accepted (Python numbers them from 0).
  std::uint32_t max_memo_key = 1u << 24;
};

// A decoded Python value. Containers hold their elements by value.
class Value {
 public:
  enum class Kind { none, boolean, integer, big_integer, floating, str, bytes, tuple, list, dict };
  using Items = std::vector<Value>;
  using Pairs = std::vector<std::pair<Value, Value>>;

  // None.
  Value() noexcept = default;
  // Named constructors for each kind.
  static Value none() { return Value(); }
  static Value boolean(bool b) { return Value(Kind::boolean, b); }
  static Value integer(std::int64_t i) { return Value(Kind::integer, i); }
  // An int outside int64, as decimal digits with an optional leading '-'.
  static Value big_integer(std::string decimal) { return Value(Kind::big_integer, std::move(decimal)); }
  static Value floating(double d) { return Value(Kind::floating, d); }
  // A str, as UTF-8 (lone surrogates kept as Python's surrogatepass bytes).
  static Value str(std::string utf8) { return Value(Kind::str, std::move(utf8)); }
  static Value bytes(std::string raw) { return Value(Kind::bytes, std::move(raw)); }
  static Value tuple(Items items) { return Value(Kind::tuple, std::move(items)); }
  static Value list(Items items) { return Value(Kind::list, std::move(items)); }
  static Value dict(Pairs pairs) { return Value(Kind::dict, std::move(pairs)); }

  // What this value is.
  Kind kind() const noexcept { return kind_; }
  bool is_none() const noexcept { return kind_ == Kind::none; }
  bool is_bool() const noexcept { return kind_ == Kind::boolean; }
  // True for integer and big_integer.
  bool is_int() const noexcept { return kind_ == Kind::integer || kind_ == Kind::big_integer; }
  bool is_float() const noexcept { return kind_ == Kind::floating; }
  bool is_str() const noexcept { return kind_ == Kind::str; }
  bool is_bytes() const noexcept { return kind_ == Kind::bytes; }
  bool is_tuple() const noexcept { return kind_ == Kind::tuple; }
  bool is_list() const noexcept { return kind_ == Kind::list; }
  bool is_dict() const noexcept { return kind_ == Kind::dict; }

  // Typed access; each throws PickleError when the value is of another kind.
  bool as_bool() const;
  // The int; PickleError also when it does not fit int64.
  std::int64_t as_int() const;
  // Any int as decimal text.
  std::string int_text() const;
  double as_float() const;
  // str (UTF-8) or bytes (raw).
  const std::string& as_string() const;
  // Elements of a tuple or list.
  const Items& items() const;
  // Key/value pairs of a dict, in insertion order.
  const Pairs& pairs() const;
  // The dict entry whose key is the str `key`, or nullptr.
  const Value* find(std::string_view key) const;
  // As find(), but PickleError when absent.
  const Value& at(std::string_view key) const;

  friend bool operator==(const Value& a, const Value& b) = default;

 private:
  template <class V>
  Value(Kind k, V&& v) : kind_(k), v_(std::forward<V>(v)) {}
  Kind kind_ = Kind::none;
  std::variant<std::monostate, bool, std::int64_t, double, std::string, Items, Pairs> v_;
};

// Decodes one pickle (data after the STOP opcode is ignored, as pickle.loads does).
Value loads(std::string_view data, const LoadOptions& options = {});

// json.dumps(value).
std::string to_json(const Value& value);
// Appends json.dumps(value) to `out`.
void append_json(std::string& out, const Value& value);

// Decodes one pickle and appends its JSON to `out` without building a Value (the fast
// path of the log server). On PickleError, `out` is left as it was.
void pickle_to_json(std::string_view data, std::string& out, const LoadOptions& options = {});

// Like pickle_to_json, and also returns the float stored under the top-level dict key
// `key` (NaN when absent or not a float): the log server uses it to time each record.
double pickle_to_json_with(std::string_view data, std::string& out, std::string_view key,
                           const LoadOptions& options = {});

}  // namespace concur::pickle
