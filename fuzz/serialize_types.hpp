// The types fuzz_serialize decodes, and valid sample values of each for the seed corpus
// (make_corpus.cpp). The first input byte picks the type: its index in Types.
#pragma once

#include <array>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "concur/serialize.hpp"

namespace concur_fuzz {

// A recursive user type: nesting depth of user types is limited by the decoder.
struct Tree {
  std::string name;
  std::vector<int> values;
  std::vector<Tree> kids;
  std::map<std::string, std::uint16_t> tags;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(name, values, kids, tags);
  }
  friend bool operator==(const Tree&, const Tree&) = default;
};

struct Base {
  std::int64_t id = 0;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(id);
  }
  friend bool operator==(const Base&, const Base&) = default;
};

// Everything cereal does itself rather than through concur's codecs: versions, base
// classes, save_minimal, smart pointers (unique and shared, with cereal's pointer ids).
struct Versioned : Base {
  int a = 0;
  std::optional<std::string> b;
  std::unique_ptr<Versioned> next;
  std::shared_ptr<std::string> s1, s2;
  std::chrono::milliseconds dur{0};
  std::complex<float> cx;
  std::array<std::bitset<9>, 2> bits;
  template <class Ar>
  void serialize(Ar& ar, const std::uint32_t version) {
    ar(cereal::base_class<Base>(this), a);
    if (version >= 2) ar(b, next, s1, s2, dur, cx, bits);
  }
};

struct Cents {
  std::int32_t cents = 0;
  template <class Ar>
  std::int64_t save_minimal(const Ar&) const {
    return cents;
  }
  template <class Ar>
  void load_minimal(const Ar&, const std::int64_t& v) {
    cents = static_cast<std::int32_t>(v);  // truncation is this type's own business
  }
  friend bool operator==(const Cents&, const Cents&) = default;
};

struct EmptyCereal {
  template <class Ar>
  void serialize(Ar&) {}
  friend bool operator==(const EmptyCereal&, const EmptyCereal&) = default;
};

// Compared after decoding: with operator== (exact), or only through their encodings when
// they hold floating point (NaN != NaN) or have no operator==. Unordered containers are
// never compared by encoding: their iteration order is not part of their value.
enum class Compare { value, bytes };

template <class T, Compare C>
struct Case {
  using type = T;
  static constexpr Compare compare = C;
};

using Cases = std::tuple<
    Case<std::int32_t, Compare::value>,                                             // 0
    Case<std::string, Compare::value>,                                              // 1
    Case<std::vector<int>, Compare::value>,                                         // 2
    Case<std::vector<std::string>, Compare::value>,                                 // 3
    Case<std::map<std::string, std::vector<double>>, Compare::bytes>,               // 4
    Case<std::optional<std::variant<int, std::string, std::vector<std::byte>>>,
         Compare::value>,                                                           // 5
    Case<std::tuple<std::uint8_t, bool, std::u16string, std::pair<int, std::list<short>>>,
         Compare::value>,                                                           // 6
    Case<std::vector<bool>, Compare::value>,                                        // 7
    Case<std::deque<std::set<std::int64_t>>, Compare::value>,                       // 8
    Case<std::unordered_map<std::string, std::multiset<char>>, Compare::value>,     // 9
    Case<std::bitset<77>, Compare::value>,                                          // 10
    Case<Tree, Compare::value>,                                                     // 11
    Case<std::vector<std::map<int, std::vector<std::optional<std::string>>>>,
         Compare::value>,                                                           // 12
    Case<std::forward_list<std::array<std::uint16_t, 3>>, Compare::value>,          // 13
    Case<std::vector<std::variant<std::monostate, EmptyCereal, Cents>>,
         Compare::value>,                                                           // 14
    Case<Versioned, Compare::bytes>,                                                // 15
    Case<std::vector<double>, Compare::bytes>,                                      // 16
    Case<std::unordered_multimap<std::int16_t, std::tuple<bool, std::string>>,
         Compare::value>,                                                           // 17
    Case<std::vector<Tree>, Compare::value>                                         // 18
    >;
inline constexpr std::size_t kCaseCount = std::tuple_size_v<Cases>;

// Calls f.template operator()<Case>() for case number `index` (mod kCaseCount).
template <class F, std::size_t... I>
void visit_case_impl(std::size_t index, F& f, std::index_sequence<I...>) {
  static_cast<void>(((index == I ? (f.template operator()<std::tuple_element_t<I, Cases>>(), true)
                                 : false) ||
                     ...));
}
template <class F>
void visit_case(std::size_t index, F&& f) {
  visit_case_impl(index % kCaseCount, f, std::make_index_sequence<kCaseCount>{});
}

// Valid values of each type, small and a few edge cases.
template <class T>
std::vector<T> samples();

inline Tree sample_tree(int depth) {
  Tree t{"node" + std::to_string(depth), {depth, -depth, 1 << 20}, {}, {{"k", 7}}};
  if (depth > 0) {
    t.kids.push_back(sample_tree(depth - 1));
    t.kids.push_back(Tree{"leaf", {}, {}, {}});
  }
  return t;
}

inline Versioned sample_versioned(bool chain) {
  Versioned v;
  v.id = -42;
  v.a = 7;
  v.b = "b";
  v.s1 = std::make_shared<std::string>("shared");
  v.s2 = v.s1;  // the second is a back reference by pointer id
  v.dur = std::chrono::milliseconds(1500);
  v.cx = {1.5f, -2.0f};
  v.bits[0].set(3);
  v.bits[1].set(8);
  if (chain) v.next = std::make_unique<Versioned>(sample_versioned(false));
  return v;
}

template <>
inline std::vector<std::int32_t> samples() {
  return {0, -1, 123456789};
}
template <>
inline std::vector<std::string> samples() {
  return {"", "hello", std::string(300, 'x')};
}
template <>
inline std::vector<std::vector<int>> samples() {
  return {{}, {1, 2, 3, -4}};
}
template <>
inline std::vector<std::vector<std::string>> samples() {
  return {{}, {"a", "", "ccc"}};
}
template <>
inline std::vector<std::map<std::string, std::vector<double>>> samples() {
  return {{}, {{"x", {1.5, -0.0}}, {"y", {}}}};
}
template <>
inline std::vector<std::optional<std::variant<int, std::string, std::vector<std::byte>>>>
samples() {
  return {std::nullopt, 5, std::string("str"), std::vector<std::byte>{std::byte{1}, std::byte{255}}};
}
template <>
inline std::vector<std::tuple<std::uint8_t, bool, std::u16string, std::pair<int, std::list<short>>>>
samples() {
  return {{std::uint8_t{9}, true, u"wide", {3, {1, 2, 3}}}, {}};
}
template <>
inline std::vector<std::vector<bool>> samples() {
  return {{}, {true, false, true}, std::vector<bool>(17, true)};
}
template <>
inline std::vector<std::deque<std::set<std::int64_t>>> samples() {
  return {{}, {{}, {1, 5, -3}}};
}
template <>
inline std::vector<std::unordered_map<std::string, std::multiset<char>>> samples() {
  return {{}, {{"a", {'x', 'x', 'y'}}, {"b", {}}}};
}
template <>
inline std::vector<std::bitset<77>> samples() {
  std::bitset<77> b;
  b.set(0).set(76).set(40);
  return {{}, b};
}
template <>
inline std::vector<Tree> samples() {
  return {Tree{}, sample_tree(3)};
}
template <>
inline std::vector<std::vector<std::map<int, std::vector<std::optional<std::string>>>>> samples() {
  return {{}, {{{1, {std::nullopt, "z"}}, {2, {}}}, {}}};
}
template <>
inline std::vector<std::forward_list<std::array<std::uint16_t, 3>>> samples() {
  return {{}, {{1, 2, 3}, {65535, 0, 7}}};
}
template <>
inline std::vector<std::vector<std::variant<std::monostate, EmptyCereal, Cents>>> samples() {
  return {{}, {std::monostate{}, EmptyCereal{}, Cents{250}}, {100, std::monostate{}}};
}
template <>
inline std::vector<Versioned> samples() {
  std::vector<Versioned> v;
  v.emplace_back();
  v.push_back(sample_versioned(true));
  return v;
}
template <>
inline std::vector<std::vector<double>> samples() {
  return {{}, {0.5, -1e300, 4.9e-324}};
}
template <>
inline std::vector<std::unordered_multimap<std::int16_t, std::tuple<bool, std::string>>> samples() {
  return {{}, {{1, {true, "one"}}, {1, {false, "uno"}}, {-2, {true, ""}}}};
}
template <>
inline std::vector<std::vector<Tree>> samples() {
  return {{}, {sample_tree(1), Tree{}}};
}

}  // namespace concur_fuzz

CEREAL_CLASS_VERSION(concur_fuzz::Versioned, 2)
