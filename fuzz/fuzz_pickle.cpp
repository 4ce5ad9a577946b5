// Fuzz target of the pickle reader (concur/pickle.hpp): the log server feeds it bytes
// from the network.
//
// Properties:
// * loads() succeeds or throws concur::pickle::PickleError (no other exception, crash, UB,
//   leak, or single allocation far beyond the input's size);
// * on success, to_json() does not crash and throws nothing but PickleError (a dict key
//   JSON cannot hold is refused that way);
// * pickle_to_json() and pickle_to_json_with(), the walkers that skip the Value, likewise,
//   leave `out` as it was when they throw, and when both paths succeed they write exactly
//   the same JSON as to_json(loads());
// * every dict loads() returns holds each key once by Python equality (checked for str,
//   bytes, None, and ints with the bools and floats equal to them), as Python's dicts do,
//   and pickle_to_json_with() returns the float under its one "created" key.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "concur/pickle.hpp"
#include "fuzz_common.hpp"

namespace {

namespace pk = concur::pickle;

// Node arenas and vectors of Values grow by doubling, a few dozen bytes per input byte;
// anything beyond this is out of proportion.
std::size_t allocation_limit(std::size_t input) { return 256 * input + (std::size_t{1} << 20); }

void check_allocation(std::size_t input, const char* what) {
  const std::size_t largest = concur_fuzz::AllocProbe::disarm();
  if (largest > allocation_limit(input)) {
    std::fprintf(stderr, "largest allocation %zu bytes for an input of %zu bytes\n", largest, input);
    concur_fuzz::broken("allocation out of proportion to the input in", what);
  }
}

// Runs f; true if it returned, false if it threw PickleError; anything else is a bug.
template <class F>
bool only_pickle_error(const char* what, F&& f) {
  try {
    f();
    return true;
  } catch (const pk::PickleError&) {
    return false;
  } catch (const std::exception& e) {
    concur_fuzz::AllocProbe::disarm();
    std::fprintf(stderr, "%s threw: %s\n", what, e.what());
    concur_fuzz::broken("an exception other than PickleError from", what);
  } catch (...) {
    concur_fuzz::AllocProbe::disarm();
    concur_fuzz::broken("a non-std exception from", what);
  }
}

// Python-equal keys of the kinds compared here, as one string: str, bytes, and ints
// (with bools and integral floats in int64 range, which equal them). NaN, other floats,
// big ints and tuples are left out (NaNs are equal only to themselves by identity).
std::optional<std::string> key_identity(const pk::Value& k) {
  auto int_key = [](std::int64_t i) { return "i" + std::to_string(i); };
  switch (k.kind()) {
    case pk::Value::Kind::str: return "s" + k.as_string();
    case pk::Value::Kind::bytes: return "b" + k.as_string();
    case pk::Value::Kind::none: return std::string("n");
    case pk::Value::Kind::boolean: return int_key(k.as_bool() ? 1 : 0);
    case pk::Value::Kind::integer: return int_key(k.as_int());
    case pk::Value::Kind::floating: {
      const double d = k.as_float();
      if (d == std::trunc(d) && d >= -0x1p63 && d < 0x1p63)
        return int_key(static_cast<std::int64_t>(d));
      return std::nullopt;
    }
    default: return std::nullopt;
  }
}

void check_unique_keys(const pk::Value& v, int depth) {
  if (depth > 2000) return;  // loads() refuses deeper values anyway
  if (v.is_tuple() || v.is_list()) {
    for (const auto& x : v.items()) check_unique_keys(x, depth + 1);
  } else if (v.is_dict()) {
    std::unordered_set<std::string> seen;
    for (const auto& [k, x] : v.pairs()) {
      if (auto id = key_identity(k); id && !seen.insert(std::move(*id)).second)
        concur_fuzz::broken("a dict from loads() holds equal keys twice");
      check_unique_keys(k, depth + 1);
      check_unique_keys(x, depth + 1);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  concur_fuzz::AllocProbe::install();
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  std::optional<pk::Value> value;
  concur_fuzz::AllocProbe::arm();
  only_pickle_error("loads", [&] { value.emplace(pk::loads(in)); });
  check_allocation(size, "loads");

  std::optional<std::string> json;
  if (value) {
    only_pickle_error("to_json", [&] { json = pk::to_json(*value); });
    // append_json must leave what was there, and add the same text.
    std::string out = "prefix";
    const bool ok = only_pickle_error("append_json", [&] { pk::append_json(out, *value); });
    if (ok != json.has_value()) concur_fuzz::broken("append_json and to_json disagree");
    if (!ok && out != "prefix") concur_fuzz::broken("append_json changed `out` and threw");
    if (ok && out != "prefix" + *json) concur_fuzz::broken("append_json wrote other text");
  }

  std::string direct = "prefix";
  concur_fuzz::AllocProbe::arm();
  const bool direct_ok = only_pickle_error("pickle_to_json", [&] { pk::pickle_to_json(in, direct); });
  check_allocation(size, "pickle_to_json");
  if (!direct_ok && direct != "prefix") concur_fuzz::broken("pickle_to_json changed `out` and threw");
  // Both read the same opcodes: if the walker accepted, so did loads.
  if (direct_ok && !value) concur_fuzz::broken("pickle_to_json accepted what loads refused");
  // The two have separate output budgets (the walker bounds JSON bytes, loads bounds
  // decoded bytes), so one may refuse a pickle the other takes; when both accept, the text
  // must be the same.
  if (direct_ok && json && direct != "prefix" + *json) {
    std::fprintf(stderr, "to_json:        %s\npickle_to_json: %s\n", json->c_str(), direct.c_str() + 6);
    concur_fuzz::broken("pickle_to_json and to_json(loads()) differ");
  }

  std::string with = "prefix";
  double timing = 0;
  const bool with_ok = only_pickle_error("pickle_to_json_with", [&] {
    timing = pk::pickle_to_json_with(in, with, "created");
  });
  if (with_ok != direct_ok || with != direct)
    concur_fuzz::broken("pickle_to_json_with and pickle_to_json differ");
  // The float it returns is the top-level dict's "created" entry as loads() sees it.
  if (with_ok && value && value->is_dict()) {
    const pk::Value* found = value->find("created");
    const bool same = found && found->is_float()
                          ? found->as_float() == timing ||
                                (std::isnan(found->as_float()) && std::isnan(timing))
                          : std::isnan(timing);
    if (!same) concur_fuzz::broken("pickle_to_json_with returned the wrong float");
  }
  // Dicts hold each key once, as Python's do (a repeated key replaces the value).
  if (value) check_unique_keys(*value, 0);
  return 0;
}
