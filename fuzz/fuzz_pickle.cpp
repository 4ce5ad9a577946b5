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
//   the same JSON as to_json(loads()).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

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
  // The float it returns is the top-level dict's "created" entry as loads() sees it
  // (checked when the key is there once: Python would keep only the last of several).
  if (with_ok && value && value->is_dict()) {
    const pk::Value* found = nullptr;
    int count = 0;
    for (const auto& [k, v] : value->pairs()) {
      if (k.is_str() && k.as_string() == "created") {
        found = &v;
        ++count;
      }
    }
    if (count == 1) {
      const bool same = found->is_float()
                            ? found->as_float() == timing ||
                                  (std::isnan(found->as_float()) && std::isnan(timing))
                            : std::isnan(timing);
      if (!same) concur_fuzz::broken("pickle_to_json_with returned the wrong float");
    }
  }
  return 0;
}
