// Tests of concur/serialize.hpp: round trips of every supported family, cereal user
// types, out-of-band blocks, compile-time classification, and hostile input.
#include "concur/serialize.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <queue>
#include <random>
#include <thread>

// ------------------------------------------------------------------ allocation probe
// The largest single allocation while armed: decoding hostile bytes must never ask for
// absurd amounts of memory (a bad_alloc would be a failure too, but a large allocation
// that happens to succeed would hide the bug).
namespace {
std::atomic<bool> g_probe_armed{false};
std::atomic<std::size_t> g_probe_max{0};
}  // namespace

// Not under TSan, whose runtime defines these operators in the same object as others.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CONCUR_TEST_NO_PROBE 1
#endif
#endif
#if !defined(CONCUR_TEST_NO_PROBE)
// noinline: seeing free() of what operator new returned, g++ would warn of a mismatch.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (g_probe_armed.load(std::memory_order_relaxed)) {
    std::size_t cur = g_probe_max.load(std::memory_order_relaxed);
    while (n > cur && !g_probe_max.compare_exchange_weak(cur, n)) {
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace {

using concur::SerializationError;
using concur::serializable;
using concur::detail::decode;
using concur::detail::dumps;
using concur::detail::encode;
using concur::detail::kOobThreshold;
using concur::detail::loads;
using concur::detail::OobSink;
using concur::detail::OobSource;
using concur::detail::Reader;
using concur::detail::Writer;
using testing::HasSubstr;
using Bytes = std::vector<std::byte>;

template <class T>
auto round_trip(const T& v) {
  return loads<T>(dumps(v));
}

template <class T>
void expect_round_trip(const T& v) {
  EXPECT_EQ(round_trip(v), v);
}

// The message of the SerializationError that decoding `bytes` as T throws.
template <class T>
std::string decode_error(std::span<const std::byte> bytes) {
  try {
    static_cast<void>(loads<T>(bytes));
  } catch (const SerializationError& e) {
    return e.what();
  }
  ADD_FAILURE() << "decoding did not throw";
  return {};
}

Bytes u64_bytes(std::uint64_t v) {
  Bytes b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes raw(std::initializer_list<unsigned> v) {
  Bytes b;
  for (unsigned x : v) b.push_back(static_cast<std::byte>(x));
  return b;
}

// ------------------------------------------------------------------ user types

struct Plain {
  int a;
  double b;
  char tag[6];
  friend bool operator==(const Plain&, const Plain&) = default;
};

struct NoDefault {  // trivially copyable, no default constructor
  explicit NoDefault(int v) : value(v) {}
  int value;
  friend bool operator==(const NoDefault&, const NoDefault&) = default;
};

enum class Color : std::uint8_t { red = 1, green = 2, blue = 3 };
enum Legacy { legacy_a, legacy_b = 7 };

struct MemberSerialize {
  std::string name;
  std::vector<int> values;
  std::map<std::string, double> weights;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(name, values, weights);
  }
  friend bool operator==(const MemberSerialize&, const MemberSerialize&) = default;
};

namespace geo {
struct Point {  // trivially copyable, but has cereal functions: they win
  double x = 0, y = 0;
  int not_sent = 0;
  friend bool operator==(const Point&, const Point&) = default;
};
template <class Ar>
void serialize(Ar& ar, Point& p) {
  ar(p.x, p.y);
}
}  // namespace geo

class SaveLoad {
 public:
  SaveLoad() = default;
  explicit SaveLoad(std::string s) : text_(std::move(s)) {}
  const std::string& text() const { return text_; }
  template <class Ar>
  void save(Ar& ar) const {
    ar(text_.size(), text_);
  }
  template <class Ar>
  void load(Ar& ar) {
    std::size_t n = 0;
    ar(n, text_);
    if (n != text_.size()) throw std::invalid_argument("SaveLoad: size mismatch");
  }
  friend bool operator==(const SaveLoad&, const SaveLoad&) = default;

 private:
  std::string text_;
};

struct FreeSaveLoad {
  std::vector<std::string> lines;
  friend bool operator==(const FreeSaveLoad&, const FreeSaveLoad&) = default;
};
template <class Ar>
void save(Ar& ar, const FreeSaveLoad& f) {
  ar(f.lines);
}
template <class Ar>
void load(Ar& ar, FreeSaveLoad& f) {
  ar(f.lines);
}

struct Minimal {
  int cents = 0;
  template <class Ar>
  std::int64_t save_minimal(const Ar&) const {
    return cents;
  }
  template <class Ar>
  void load_minimal(const Ar&, const std::int64_t& v) {
    cents = static_cast<int>(v);
  }
  friend bool operator==(const Minimal&, const Minimal&) = default;
};

struct Versioned {
  int a = 0;
  int b = 0;
  template <class Ar>
  void serialize(Ar& ar, const std::uint32_t version) {
    ar(a);
    if (version >= 2) ar(b);
  }
  friend bool operator==(const Versioned&, const Versioned&) = default;
};

struct Base {
  int base_value = 0;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(base_value);
  }
  friend bool operator==(const Base&, const Base&) = default;
};
struct Derived : Base {
  std::string extra;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(cereal::base_class<Base>(this), extra);
  }
  friend bool operator==(const Derived&, const Derived&) = default;
};

// Every standard family inside a cereal type: they are bridged to concur's codecs.
struct Everything {
  std::string s;
  std::u16string u16;
  std::vector<int> v;
  std::vector<bool> vb;
  std::deque<std::string> dq;
  std::list<int> li;
  std::forward_list<int> fl;
  std::array<std::string, 2> arr;
  std::map<int, std::string> m;
  std::multimap<int, int> mm;
  std::unordered_map<std::string, int> um;
  std::set<std::string> st;
  std::unordered_set<int> us;
  std::optional<std::string> opt;
  std::variant<int, std::string, std::monostate> var;
  std::tuple<int, std::string> tup;
  std::pair<double, std::vector<int>> pr;
  std::chrono::milliseconds dur{0};
  std::complex<double> cx;
  std::bitset<12> bits;
  int c_array[3] = {};
  std::queue<int> q;  // cereal's own support, over the bridged deque
  std::unique_ptr<int> owned;
  Color color = Color::red;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(s, u16, v, vb, dq, li, fl, arr, m, mm, um, st, us, opt, var, tup, pr, dur, cx, bits,
       c_array, q, owned, color);
  }
  bool operator==(const Everything& o) const {
    return std::tie(s, u16, v, vb, dq, li, fl, arr, m, mm, um, st, us, opt, var, tup, pr, dur,
                    cx, bits, q, color) == std::tie(o.s, o.u16, o.v, o.vb, o.dq, o.li, o.fl,
                                                    o.arr, o.m, o.mm, o.um, o.st, o.us, o.opt,
                                                    o.var, o.tup, o.pr, o.dur, o.cx, o.bits,
                                                    o.q, o.color) &&
           std::equal(std::begin(c_array), std::end(c_array), std::begin(o.c_array)) &&
           (owned == nullptr) == (o.owned == nullptr) && (!owned || *owned == *o.owned);
  }
};

struct Node {
  int value = 0;
  std::vector<Node> children;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(value, children);
  }
  friend bool operator==(const Node&, const Node&) = default;
};

struct Chain {  // recursion through a smart pointer, entirely inside cereal
  int value = 0;
  std::unique_ptr<Chain> next;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(value, next);
  }
};

struct EmptyCereal {
  template <class Ar>
  void serialize(Ar&) {}
  friend bool operator==(const EmptyCereal&, const EmptyCereal&) = default;
};

struct Shared {
  std::shared_ptr<int> a, b;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(a, b);
  }
};

struct WithLargeBlock {
  std::vector<std::uint32_t> big;
  std::string label;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(big, label);
  }
  friend bool operator==(const WithLargeBlock&, const WithLargeBlock&) = default;
};

struct Unserializable {
  std::string name;
};
struct HoldsMutex {
  std::mutex m;
};
struct SaveOnly {
  int x = 0;
  template <class Ar>
  void save(Ar& ar) const {
    ar(x);
  }
};
struct NoDefaultCereal {
  explicit NoDefaultCereal(int v) : x(v) {}
  int x;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(x);
  }
};

}  // namespace

CEREAL_CLASS_VERSION(Versioned, 2)

namespace {

// ------------------------------------------------------------------ the concept

static_assert(serializable<int>);
static_assert(serializable<const double>);
static_assert(serializable<bool>);
static_assert(serializable<std::byte>);
static_assert(serializable<Color>);
static_assert(serializable<Legacy>);
static_assert(serializable<Plain>);
static_assert(serializable<NoDefault>);
static_assert(serializable<int[3]>);
static_assert(serializable<double[2][3]>);
static_assert(serializable<std::array<Plain, 4>>);
static_assert(serializable<std::string>);
static_assert(serializable<std::u8string>);
static_assert(serializable<std::vector<bool>>);
static_assert(serializable<std::map<std::string, std::vector<std::optional<int>>>>);
static_assert(serializable<std::variant<std::monostate, int, std::string>>);
static_assert(serializable<std::tuple<>>);
static_assert(serializable<std::pair<const int, std::string>>);
static_assert(serializable<std::chrono::system_clock::time_point>);
static_assert(serializable<std::complex<float>>);
static_assert(serializable<std::bitset<100>>);
static_assert(serializable<MemberSerialize>);
static_assert(serializable<geo::Point>);
static_assert(serializable<SaveLoad>);
static_assert(serializable<FreeSaveLoad>);
static_assert(serializable<Minimal>);
static_assert(serializable<Versioned>);
static_assert(serializable<Derived>);
static_assert(serializable<Everything>);
static_assert(serializable<Node>);
static_assert(serializable<std::vector<Node>>);
static_assert(serializable<std::map<std::string, MemberSerialize>>);

static_assert(!serializable<int*>);
static_assert(!serializable<const char*>);
static_assert(!serializable<char[6]>);
static_assert(!serializable<int Plain::*>);
static_assert(!serializable<int&>);
static_assert(!serializable<std::nullptr_t>);
static_assert(!serializable<std::string_view>);
static_assert(!serializable<std::span<const int>>);
static_assert(!serializable<std::function<void()>>);
static_assert(!serializable<std::unique_ptr<int>>);
static_assert(!serializable<std::shared_ptr<int>>);
static_assert(!serializable<std::atomic<int>>);
static_assert(!serializable<std::reference_wrapper<int>>);
static_assert(!serializable<std::mutex>);
static_assert(!serializable<std::thread>);
static_assert(!serializable<HoldsMutex>);
static_assert(!serializable<Unserializable>);
static_assert(!serializable<std::vector<Unserializable>>);
static_assert(!serializable<std::map<int, int*>>);
static_assert(!serializable<std::optional<std::function<void()>>>);
static_assert(!serializable<std::tuple<int, std::string_view>>);
static_assert(!serializable<SaveOnly>);
static_assert(!serializable<NoDefaultCereal>);
static_assert(!serializable<void>);

// The innermost offender is what compile errors name.
static_assert(std::is_same_v<concur::detail::codec<std::vector<Unserializable>>::dec_culprit,
                             Unserializable>);
static_assert(std::is_same_v<
              concur::detail::codec<std::map<int, std::tuple<int, int*>>>::enc_culprit, int*>);
static_assert(std::is_void_v<concur::detail::codec<std::vector<std::string>>::dec_culprit>);
static_assert(std::is_same_v<concur::detail::codec<std::vector<std::string_view>>::dec_culprit,
                             std::string_view>);

// Encode-only sources are encodable but not serializable.
static_assert(concur::detail::codec<std::string_view>::enc);
static_assert(concur::detail::codec<std::vector<std::string_view>>::enc);
static_assert(concur::detail::codec<SaveOnly>::enc);

// ------------------------------------------------------------------ Writer and Reader

TEST(SerializeBuffers, WriterGrowsAppendsAndClearKeepsCapacity) {
  Writer w;
  EXPECT_EQ(w.size(), 0u);
  EXPECT_TRUE(w.bytes().empty());
  w.write_bytes("abc", 3);
  std::byte* p = w.grow(2);
  p[0] = std::byte{'d'};
  p[1] = std::byte{'e'};
  ASSERT_EQ(w.size(), 5u);
  EXPECT_EQ(std::memcmp(w.bytes().data(), "abcde", 5), 0);
  for (int i = 0; i < 10000; ++i) w.write_bytes("0123456789", 10);
  const std::size_t cap = w.capacity();
  EXPECT_GE(cap, 100005u);
  w.clear();
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(w.capacity(), cap);
  w.write_bytes("x", 1);
  w.truncate(0);
  EXPECT_EQ(w.size(), 0u);

  Writer moved(std::move(w));
  EXPECT_EQ(moved.capacity(), cap);
}

TEST(SerializeBuffers, ReaderIsBoundsChecked) {
  const Bytes b = raw({1, 2, 3, 4, 5});
  Reader r(b);
  EXPECT_EQ(r.remaining(), 5u);
  unsigned char out[2];
  r.read_bytes(out, 2);
  EXPECT_EQ(out[1], 2);
  EXPECT_EQ(std::to_integer<int>(*r.take(1)), 3);
  EXPECT_EQ(r.remaining(), 2u);
  EXPECT_THROW(r.take(3), SerializationError);
  Reader empty({});
  EXPECT_EQ(empty.remaining(), 0u);
  EXPECT_NO_THROW(empty.take(0));
  EXPECT_THROW(empty.read_bytes(out, 1), SerializationError);
}

TEST(SerializeBuffers, CopyBytesIsMemcpyWhateverTheLayout) {
  // Including the layouts copy_bytes copies in pieces (destination 1..63 bytes past the
  // source modulo 4 KiB).
  std::vector<std::byte> arena(1 << 20);
  for (std::size_t i = 0; i < arena.size(); ++i) arena[i] = static_cast<std::byte>(i * 131 + 7);
  const std::byte* src = arena.data() + 100;
  for (std::size_t n : {0u, 1u, 2047u, 2048u, 2049u, 5000u, 70001u}) {
    for (std::size_t distance : {8u, 63u, 64u, 200u}) {
      std::vector<std::byte> out(n + 2 * 4096 + 4096);
      std::byte* dst = out.data() + 4096;
      dst += (static_cast<std::size_t>(src - dst) + distance) % 4096;
      EXPECT_EQ(concur::detail::copy_would_stall(dst, src, n), n >= 2048 && distance < 64);
      concur::detail::copy_bytes(dst, src, n);
      EXPECT_EQ(n == 0 ? 0 : std::memcmp(dst, src, n), 0) << n << " " << distance;
    }
  }
}

TEST(SerializeBuffers, ContiguousDecodeIsRightWhereverTheMessageSits) {
  // Every offset within a page: aligned and unaligned sources, and (for some offsets)
  // the destinations that make_contiguous fills in pieces.
  std::vector<int> v(1500);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int>(i * 2654435761u);
  const std::u16string s(3000, u'x');
  const Bytes bv = dumps(v), bs = dumps(s);
  Bytes buf(8192 + bv.size() + bs.size());
  for (std::size_t offset = 0; offset < 4096; ++offset) {
    std::memcpy(buf.data() + offset, bv.data(), bv.size());
    std::memcpy(buf.data() + offset + bv.size(), bs.data(), bs.size());
    Reader r(std::span<const std::byte>(buf).subspan(offset, bv.size() + bs.size()));
    ASSERT_EQ(decode<std::vector<int>>(r), v) << offset;
    ASSERT_TRUE(decode<std::u16string>(r) == s) << offset;
  }
}

TEST(SerializeBuffers, SeveralValuesInOneWriter) {
  Writer w;
  encode(w, 42);
  encode(w, std::string("two"));
  encode(w, std::vector<double>{1.5, 2.5});
  Reader r(w.bytes());
  EXPECT_EQ(decode<int>(r), 42);
  EXPECT_EQ(decode<std::string>(r), "two");
  EXPECT_EQ(decode<std::vector<double>>(r), (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(r.remaining(), 0u);
}

// ------------------------------------------------------------------ round trips

TEST(SerializeRoundTrip, Scalars) {
  expect_round_trip(0);
  expect_round_trip(-123456789);
  expect_round_trip(std::numeric_limits<std::int64_t>::min());
  expect_round_trip(std::numeric_limits<std::uint64_t>::max());
  expect_round_trip(3.25);
  expect_round_trip(-0.0f);
  expect_round_trip('x');
  expect_round_trip(true);
  expect_round_trip(false);
  expect_round_trip(std::byte{0xAB});
  expect_round_trip(Color::blue);
  expect_round_trip(legacy_b);
  expect_round_trip(char8_t{u8'z'});
  EXPECT_TRUE(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_EQ(dumps(1234).size(), sizeof(int));
  EXPECT_EQ(dumps(true).size(), 1u);
}

TEST(SerializeRoundTrip, PlainStructsAndArrays) {
  expect_round_trip(Plain{7, 2.5, "hello"});
  EXPECT_EQ(dumps(Plain{7, 2.5, "hello"}).size(), sizeof(Plain));
  expect_round_trip(NoDefault{99});
  expect_round_trip(std::array<int, 4>{1, 2, 3, 4});
  expect_round_trip(std::array<std::string, 3>{"a", "", "ccc"});
  expect_round_trip(std::array<bool, 3>{true, false, true});
  expect_round_trip(std::array<int, 0>{});

  const int c[3] = {4, 5, 6};
  const std::array<int, 3> as_std = loads<int[3]>(dumps(c));
  EXPECT_EQ(as_std, (std::array<int, 3>{4, 5, 6}));
  EXPECT_EQ(dumps(c), dumps(as_std));  // a C array and a std::array share their encoding
  const double grid[2][3] = {{1, 2, 3}, {4, 5, 6}};
  const auto g = loads<double[2][3]>(dumps(grid));
  EXPECT_EQ(g[1][2], 6.0);
  const std::string names[2] = {"x", "yy"};
  EXPECT_EQ((loads<std::string[2]>(dumps(names))), (std::array<std::string, 2>{"x", "yy"}));
  const bool flags[2] = {false, true};
  EXPECT_EQ((loads<bool[2]>(dumps(flags))), (std::array<bool, 2>{false, true}));
}

TEST(SerializeRoundTrip, Strings) {
  expect_round_trip(std::string());
  expect_round_trip(std::string("hello, world"));
  expect_round_trip(std::string("embedded\0nul", 12));
  expect_round_trip(std::string(1000, 'q'));
  // (EXPECT_TRUE: Debian's GoogleTest is built without the char8_t printers.)
  EXPECT_TRUE(round_trip(std::u8string(u8"h\u00e9llo")) == u8"h\u00e9llo");
  expect_round_trip(std::u16string(u"\u4f60\u597d"));
  expect_round_trip(std::u32string(U"\U0001F600"));
  expect_round_trip(std::wstring(L"wide"));
  EXPECT_EQ(dumps(std::string("abc")).size(), 8u + 3u);
}

TEST(SerializeRoundTrip, Sequences) {
  expect_round_trip(std::vector<int>{});
  expect_round_trip(std::vector<int>{1, -2, 3});
  expect_round_trip(std::vector<Plain>{{1, 1.0, "a"}, {2, 2.0, "b"}});
  expect_round_trip(std::vector<NoDefault>{NoDefault{1}, NoDefault{2}});
  expect_round_trip(std::vector<std::vector<std::string>>{{"a", "b"}, {}, {"c"}});
  expect_round_trip(std::vector<std::pair<int, bool>>{{1, true}, {2, false}});
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 64u, 1000u}) {
    std::vector<bool> vb(n);
    for (std::size_t i = 0; i < n; ++i) vb[i] = (i * 7 + 3) % 5 < 2;
    expect_round_trip(vb);
    EXPECT_EQ(dumps(vb).size(), 8 + (n + 7) / 8);
  }
  expect_round_trip(std::deque<std::string>{"x", "y"});
  expect_round_trip(std::deque<int>{});
  expect_round_trip(std::list<double>{1.5, 2.5});
  expect_round_trip(std::forward_list<std::string>{"first", "second", "third"});
  expect_round_trip(std::forward_list<int>{});
  // A contiguous vector of plain values is one length and the bytes.
  EXPECT_EQ(dumps(std::vector<std::int32_t>(100)).size(), 8u + 400u);
}

TEST(SerializeRoundTrip, AssociativeContainers) {
  expect_round_trip(std::map<std::string, int>{{"one", 1}, {"two", 2}});
  expect_round_trip(std::map<int, int>{});
  const std::multimap<int, std::string> mm{{1, "a"}, {1, "b"}, {0, "z"}, {1, "c"}};
  const auto mm2 = round_trip(mm);
  EXPECT_TRUE(std::equal(mm.begin(), mm.end(), mm2.begin(), mm2.end()));  // order of equals kept
  expect_round_trip(std::unordered_map<std::string, std::vector<int>>{{"a", {1}}, {"b", {}}});
  expect_round_trip(std::unordered_multimap<int, int>{{1, 1}, {1, 2}});
  expect_round_trip(std::set<std::string>{"b", "a", "c"});
  expect_round_trip(std::multiset<int>{3, 1, 3});
  expect_round_trip(std::unordered_set<int>{5, 6, 7});
  expect_round_trip(std::unordered_multiset<std::string>{"x", "x"});
  expect_round_trip(std::map<int, std::string, std::greater<>>{{1, "a"}, {2, "b"}});
}

TEST(SerializeRoundTrip, SumAndProductTypes) {
  expect_round_trip(std::optional<int>());
  expect_round_trip(std::optional<std::string>("x"));
  expect_round_trip(std::optional<std::optional<int>>(std::optional<int>()));
  using V = std::variant<std::monostate, int, std::string, std::vector<double>>;
  expect_round_trip(V());
  expect_round_trip(V(5));
  expect_round_trip(V(std::string("s")));
  expect_round_trip(V(std::vector<double>{1, 2}));
  expect_round_trip(std::variant<int, int>(std::in_place_index<1>, 3));
  EXPECT_EQ(round_trip(std::variant<int, int>(std::in_place_index<1>, 3)).index(), 1u);
  expect_round_trip(std::monostate());
  EXPECT_TRUE(dumps(std::monostate()).empty());
  expect_round_trip(std::tuple<>());
  expect_round_trip(std::tuple<long, double>(-5, 0.5));
  EXPECT_EQ(dumps(std::tuple<long, double>(1, 2)).size(), 16u);
  expect_round_trip(std::tuple<int, std::string, std::optional<bool>>(1, "t", true));
  expect_round_trip(std::pair<std::string, int>("p", 2));
}

TEST(SerializeRoundTrip, TimeComplexBitset) {
  using namespace std::chrono;
  expect_round_trip(milliseconds(1234));
  expect_round_trip(duration<double>(1.5));
  const auto now = system_clock::now();
  expect_round_trip(now);
  expect_round_trip(steady_clock::now());
  expect_round_trip(std::complex<double>(1.5, -2.5));
  expect_round_trip(std::bitset<1>("1"));
  expect_round_trip(std::bitset<64>(0xF0F0F0F0F0F0F0F0ull));
  std::bitset<100> b;
  b.set(0).set(63).set(64).set(99);
  expect_round_trip(b);
  EXPECT_EQ(dumps(b).size(), 13u);
}

TEST(SerializeRoundTrip, DeepNestingOfStandardTypes) {
  using T = std::map<std::string,
                     std::vector<std::variant<std::optional<std::tuple<int, std::set<double>>>,
                                              std::list<std::array<std::string, 2>>>>>;
  T v;
  v["a"].emplace_back(std::optional<std::tuple<int, std::set<double>>>(
      std::tuple<int, std::set<double>>(1, {2.0, 3.0})));
  v["a"].emplace_back(std::list<std::array<std::string, 2>>{{"x", "y"}, {"", "z"}});
  v["b"];
  expect_round_trip(v);
}

TEST(SerializeRoundTrip, EmptyContainers) {
  expect_round_trip(std::vector<std::string>());
  expect_round_trip(std::map<std::string, std::vector<int>>());
  expect_round_trip(std::vector<std::vector<int>>(3));
  expect_round_trip(std::string());
  expect_round_trip(std::vector<std::monostate>(5));
  expect_round_trip(std::vector<std::tuple<>>(1000));
  expect_round_trip(std::vector<EmptyCereal>(1000));
}

// ------------------------------------------------------------------ sources

TEST(SerializeSources, ViewsAndCStringsDecodeAsOwners) {
  const std::string_view sv = "view";
  EXPECT_EQ(loads<std::string>(dumps(sv)), "view");
  EXPECT_EQ(dumps(sv), dumps(std::string("view")));
  const char* cs = "c string";
  EXPECT_EQ(loads<std::string>(dumps(cs)), "c string");
  EXPECT_EQ(loads<std::string>(dumps("literal")), "literal");  // no trailing NUL
  const char8_t* u8 = u8"u8";
  EXPECT_TRUE(loads<std::u8string>(dumps(u8)) == u8"u8");
  const std::vector<int> v{1, 2, 3};
  EXPECT_EQ(loads<std::vector<int>>(dumps(std::span<const int>(v))), v);
  const std::vector<std::string> vs{"a", "b"};
  EXPECT_EQ(loads<std::vector<std::string>>(dumps(std::span<const std::string>(vs))), vs);
  const std::vector<std::string_view> views{"x", "yz"};
  EXPECT_EQ(loads<std::vector<std::string>>(dumps(views)), (std::vector<std::string>{"x", "yz"}));
  const std::map<std::string_view, int> m{{"k", 1}};
  EXPECT_EQ((loads<std::map<std::string, int>>(dumps(m))), (std::map<std::string, int>{{"k", 1}}));
  const char* null = nullptr;
  EXPECT_THROW(dumps(null), SerializationError);
}

// ------------------------------------------------------------------ cereal user types

TEST(SerializeCereal, MemberFreeSaveLoadMinimalVersionedInherited) {
  expect_round_trip(MemberSerialize{"m", {1, 2, 3}, {{"w", 0.5}}});
  expect_round_trip(SaveLoad("text"));
  expect_round_trip(FreeSaveLoad{{"l1", "l2"}});
  expect_round_trip(Minimal{1234});
  expect_round_trip(Versioned{1, 2});
  Derived d;
  d.base_value = 5;
  d.extra = "extra";
  expect_round_trip(d);
}

TEST(SerializeCereal, TriviallyCopyableWithCerealFunctionsUsesCereal) {
  const geo::Point p{1.5, 2.5, 99};
  const Bytes b = dumps(p);
  EXPECT_EQ(b.size(), 2 * sizeof(double));  // not sizeof(Point): not_sent is not sent
  const auto q = loads<geo::Point>(b);
  EXPECT_EQ(q.x, 1.5);
  EXPECT_EQ(q.y, 2.5);
  EXPECT_EQ(q.not_sent, 0);
}

TEST(SerializeCereal, StandardMembersUseConcursEncoding) {
  const MemberSerialize m{"name", {1, 2, 3}, {{"a", 1.0}}};
  EXPECT_EQ(dumps(m), dumps(std::make_tuple(m.name, m.values, m.weights)));
}

TEST(SerializeCereal, EveryStandardFamilyInsideAUserType) {
  Everything e;
  e.s = "s";
  e.u16 = u"u16";
  e.v = {1, 2};
  e.vb = {true, false, true};
  e.dq = {"d"};
  e.li = {3, 4};
  e.fl = {5, 6};
  e.arr = {"a0", "a1"};
  e.m = {{1, "one"}};
  e.mm = {{1, 1}, {1, 2}};
  e.um = {{"u", 7}};
  e.st = {"x", "y"};
  e.us = {8, 9};
  e.opt = "o";
  e.var = std::string("var");
  e.tup = {10, "t"};
  e.pr = {0.5, {11}};
  e.dur = std::chrono::milliseconds(12);
  e.cx = {1, 2};
  e.bits = 0b101;
  e.c_array[2] = 13;
  e.q.push(14);
  e.q.push(15);
  e.owned = std::make_unique<int>(16);
  e.color = Color::green;
  EXPECT_TRUE(round_trip(e) == e);
  Everything empty;
  EXPECT_TRUE(round_trip(empty) == empty);
}

TEST(SerializeCereal, UserTypesInsideContainers) {
  const std::vector<MemberSerialize> v{{"a", {1}, {}}, {"b", {}, {{"x", 1}}}};
  expect_round_trip(v);
  expect_round_trip(std::map<std::string, SaveLoad>{{"k", SaveLoad("v")}});
  expect_round_trip(std::optional<Minimal>(Minimal{3}));
  expect_round_trip(std::variant<int, FreeSaveLoad>(FreeSaveLoad{{"f"}}));
  expect_round_trip(std::tuple<Versioned, Versioned>({1, 2}, {3, 4}));
  expect_round_trip(std::vector<Versioned>{{1, 2}, {3, 4}, {5, 6}});
  expect_round_trip(std::array<geo::Point, 2>{geo::Point{1, 2, 0}, geo::Point{3, 4, 0}});
  Node tree{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}};
  expect_round_trip(tree);
  expect_round_trip(std::vector<Node>{tree, tree});
}

TEST(SerializeCereal, SmartPointersInsideUserTypes) {
  Shared s;
  s.a = std::make_shared<int>(5);
  s.b = s.a;
  const Shared t = round_trip(s);
  ASSERT_TRUE(t.a);
  EXPECT_EQ(*t.a, 5);
  EXPECT_EQ(t.a, t.b);  // sharing survives

  Chain c{1, std::make_unique<Chain>(Chain{2, std::make_unique<Chain>(Chain{3, nullptr})})};
  const Chain d = round_trip(c);
  ASSERT_TRUE(d.next && d.next->next);
  EXPECT_EQ(d.next->next->value, 3);
  EXPECT_FALSE(d.next->next->next);
}

TEST(SerializeCereal, UserExceptionsFromLoadPropagate) {
  // A load() that rejects its data keeps its own exception type.
  Writer w;
  encode(w, std::size_t{5});
  encode(w, std::string("abc"));
  Reader r(w.bytes());
  EXPECT_THROW(decode<SaveLoad>(r), std::invalid_argument);
}

TEST(SerializeCereal, CerealErrorsBecomeSerializationErrors) {
  Shared s;
  s.a = std::make_shared<int>(5);
  s.b = s.a;
  Bytes b = dumps(s);
  // The second pointer refers back to the first by id; point it at an id never sent.
  ASSERT_GE(b.size(), 4u);
  std::uint32_t id;
  std::memcpy(&id, b.data() + b.size() - 4, 4);
  id = 77;
  std::memcpy(b.data() + b.size() - 4, &id, 4);
  EXPECT_THAT(decode_error<Shared>(b), HasSubstr("cereal"));
}

// ------------------------------------------------------------------ out-of-band blocks

// Copies what it is given, as a shared-memory transport would.
struct CopyingOob final : OobSink, OobSource {
  std::map<std::uint64_t, Bytes> blocks;
  std::uint64_t next = 1000;
  std::uint64_t put(const void* data, std::size_t n) override {
    const auto* p = static_cast<const std::byte*>(data);
    blocks.emplace(next, Bytes(p, p + n));
    return next++;
  }
  std::span<const std::byte> get(std::uint64_t id, std::size_t) override {
    const auto it = blocks.find(id);
    if (it == blocks.end()) throw SerializationError("unknown block " + std::to_string(id));
    return it->second;
  }
};

// Keeps pointers only: proves that the codec hands the caller's memory to the sink and
// reads the source's memory, with no copy of its own.
struct ZeroCopyOob final : OobSink, OobSource {
  struct Block {
    const std::byte* data;
    std::size_t size;
  };
  std::vector<Block> blocks;
  int gets = 0;
  std::uint64_t put(const void* data, std::size_t n) override {
    blocks.push_back({static_cast<const std::byte*>(data), n});
    return blocks.size() - 1;
  }
  std::span<const std::byte> get(std::uint64_t id, std::size_t) override {
    ++gets;
    if (id >= blocks.size()) throw SerializationError("unknown block");
    return {blocks[id].data, blocks[id].size};
  }
};

TEST(SerializeOob, LargeBlocksWithoutASinkStayInline) {
  std::vector<int> big(kOobThreshold / sizeof(int) + 10);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<int>(i * 2654435761u);
  const Bytes b = dumps(big);
  EXPECT_EQ(b.size(), 8 + 8 + big.size() * sizeof(int));  // length, marker, bytes
  EXPECT_EQ(loads<std::vector<int>>(b), big);
  const std::string s(3 * kOobThreshold, 'z');
  EXPECT_EQ(loads<std::string>(dumps(s)), s);
  // Just under the threshold: no marker at all.
  EXPECT_EQ(dumps(std::string(kOobThreshold - 1, 'a')).size(), 8 + kOobThreshold - 1);
}

TEST(SerializeOob, LargeBlocksGoThroughTheSink) {
  CopyingOob oob;
  Writer w;
  w.set_oob_sink(&oob);
  std::vector<double> big(kOobThreshold / sizeof(double) * 2, 1.25);
  big.back() = -7;
  const std::string small = "small stays inline";
  const WithLargeBlock user{std::vector<std::uint32_t>(kOobThreshold, 9u), "label"};
  encode(w, big);
  encode(w, small);
  encode(w, user);
  EXPECT_EQ(oob.blocks.size(), 2u);  // big and user.big; small is inline
  EXPECT_LT(w.size(), 200u);
  Reader r(w.bytes(), &oob);
  EXPECT_EQ(decode<std::vector<double>>(r), big);
  EXPECT_EQ(decode<std::string>(r), small);
  EXPECT_EQ(decode<WithLargeBlock>(r), user);
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(SerializeOob, MissingSourceUnknownIdAndWrongSizeAreErrors) {
  CopyingOob oob;
  Writer w;
  w.set_oob_sink(&oob);
  encode(w, std::string(kOobThreshold, 'x'));
  {
    Reader r(w.bytes());  // no source
    try {
      decode<std::string>(r);
      ADD_FAILURE();
    } catch (const SerializationError& e) {
      EXPECT_THAT(e.what(), HasSubstr("no OobSource"));
    }
  }
  {
    CopyingOob other;
    Reader r(w.bytes(), &other);
    EXPECT_THROW(decode<std::string>(r), SerializationError);
  }
  {
    oob.blocks.begin()->second.pop_back();
    Reader r(w.bytes(), &oob);
    try {
      decode<std::string>(r);
      ADD_FAILURE();
    } catch (const SerializationError& e) {
      EXPECT_THAT(e.what(), HasSubstr("expected 1048576"));
    }
  }
}

TEST(SerializeOob, OneGibibyteVectorOfBytesWithoutCopiesInTheCodec) {
  const std::size_t n = std::size_t{1} << 30;
  std::vector<std::byte> big(n);
  std::memset(big.data(), 0x5A, n);
  big[0] = std::byte{1};
  big[n / 2] = std::byte{2};
  big[n - 1] = std::byte{3};

  ZeroCopyOob oob;
  Writer w;
  w.set_oob_sink(&oob);
  encode(w, big);
  ASSERT_EQ(oob.blocks.size(), 1u);
  EXPECT_EQ(oob.blocks[0].data, big.data());  // the sink got the vector's own memory
  EXPECT_EQ(oob.blocks[0].size, n);
  EXPECT_LT(w.size(), 32u);  // only length, marker and id are inline

  Reader r(w.bytes(), &oob);
  const auto back = decode<std::vector<std::byte>>(r);
  EXPECT_EQ(oob.gets, 1);
  ASSERT_EQ(back.size(), n);
  EXPECT_NE(back.data(), big.data());
  EXPECT_EQ(std::memcmp(back.data(), big.data(), n), 0);
}

// ------------------------------------------------------------------ hostile input

TEST(SerializeErrors, TruncationNamesSizesAndType) {
  const Bytes b = dumps(std::vector<int>{1, 2, 3});
  EXPECT_EQ(decode_error<std::vector<int>>(std::span(b).first(3)),
            "concur: truncated message: needed 8 bytes, 3 left while decoding std::vector<int>");
  EXPECT_THAT(decode_error<std::vector<int>>(std::span(b).first(10)),
              HasSubstr("needed 12 bytes, 2 left while decoding std::vector<int>"));
  const Bytes m = dumps(std::map<std::string, int>{{"key", 1}});
  using M = std::map<std::string, int>;
  EXPECT_THAT(decode_error<M>(std::span(m).first(m.size() - 1)),
              HasSubstr("while decoding int (in std::map<std::string, int>)"));
  EXPECT_THAT(decode_error<int>({}), HasSubstr("needed 4 bytes, 0 left while decoding int"));
}

TEST(SerializeErrors, EveryStrictPrefixIsRejected) {
  auto check = [](const auto& value) {
    using T = std::decay_t<decltype(value)>;
    const Bytes b = dumps(value);
    for (std::size_t len = 0; len < b.size(); ++len) {
      Reader r(std::span<const std::byte>(b).first(len));
      EXPECT_THROW(decode<T>(r), SerializationError) << "prefix " << len;
    }
  };
  check(std::vector<std::string>{"a", "bc", ""});
  check(std::map<int, std::optional<std::string>>{{1, "x"}, {2, std::nullopt}});
  check(std::tuple<int, std::variant<double, std::string>, std::vector<bool>>(
      1, std::string("v"), {true, false}));
  check(MemberSerialize{"n", {1, 2}, {{"w", 1}}});
  check(Node{1, {Node{2, {}}, Node{3, {}}}});
}

TEST(SerializeErrors, TrailingBytes) {
  Bytes b = dumps(5);
  b.push_back(std::byte{0});
  EXPECT_EQ(decode_error<int>(b), "concur: 1 trailing bytes after decoding int");
}

TEST(SerializeErrors, InvalidBoolOptionalFlagVariantIndex) {
  EXPECT_THAT(decode_error<bool>(raw({2})),
              HasSubstr("byte 0x02 where a bool (0 or 1) was expected while decoding bool"));
  using BoolPair = std::array<bool, 2>;
  EXPECT_THAT(decode_error<BoolPair>(raw({1, 9})), HasSubstr("0x09"));
  EXPECT_THAT(decode_error<std::optional<int>>(raw({5, 0, 0, 0, 0})),
              HasSubstr("while decoding std::optional<int>"));
  EXPECT_THAT((decode_error<std::variant<int, float>>(raw({2, 0, 0, 0, 0}))),
              HasSubstr("variant index 2 out of range (2 alternatives)"));
  EXPECT_THAT(decode_error<std::bitset<4>>(raw({0x1F})), HasSubstr("unused bits"));
  EXPECT_THAT(decode_error<std::vector<bool>>(cat({u64_bytes(3), raw({0x0F})})),
              HasSubstr("unused bits"));
}

TEST(SerializeErrors, HugeLengthsAreRejectedBeforeAllocating) {
  g_probe_max = 0;
  g_probe_armed = true;
  const Bytes huge = cat({u64_bytes(std::uint64_t{1} << 60), raw({0, 1, 2, 3})});
  EXPECT_THAT(decode_error<std::vector<int>>(huge), HasSubstr("while decoding std::vector<int>"));
  EXPECT_THAT(decode_error<std::string>(huge), HasSubstr("while decoding std::string"));
  EXPECT_THAT(decode_error<std::vector<std::string>>(huge), HasSubstr("cannot fit in the 4 bytes"));
  EXPECT_THROW(loads<std::deque<double>>(huge), SerializationError);
  EXPECT_THROW((loads<std::map<int, int>>(huge)), SerializationError);
  EXPECT_THROW((loads<std::unordered_map<int, int>>(huge)), SerializationError);
  EXPECT_THROW(loads<std::vector<bool>>(huge), SerializationError);
  EXPECT_THROW(loads<std::vector<MemberSerialize>>(huge), SerializationError);
  EXPECT_THROW(loads<std::vector<std::monostate>>(huge), SerializationError);
  EXPECT_THROW(loads<std::vector<std::tuple<>>>(huge), SerializationError);
  const Bytes max = cat({u64_bytes(~std::uint64_t{0}), raw({0})});
  EXPECT_THROW(loads<std::vector<std::uint64_t>>(max), SerializationError);
  EXPECT_THROW(loads<std::vector<bool>>(max), SerializationError);
  g_probe_armed = false;
  EXPECT_LT(g_probe_max.load(), std::size_t{1} << 20);
}

TEST(SerializeErrors, ElementsThatEncodeToNothingAreBounded) {
  // Statically empty elements are refused at once, user types that write nothing after a
  // bounded number of iterations.
  const Bytes huge = u64_bytes(std::uint64_t{1} << 40);
  EXPECT_THAT(decode_error<std::vector<std::monostate>>(huge), HasSubstr("occupy no bytes"));
  EXPECT_THAT(decode_error<std::vector<EmptyCereal>>(huge), HasSubstr("occupy no bytes"));
  // The encoder applies the same limit, so nothing it accepts is refused by the decoder.
  EXPECT_THROW(dumps(std::vector<std::monostate>(std::size_t{2} << 20)), SerializationError);
  EXPECT_NO_THROW(dumps(std::vector<std::monostate>(std::size_t{1} << 17)));
}

TEST(SerializeErrors, NestingDepthIsBounded) {
  Node deep;
  Node* at = &deep;
  for (std::size_t i = 0; i < concur::detail::kMaxDepth + 10; ++i) {
    at->children.emplace_back();
    at = &at->children.back();
  }
  try {
    dumps(deep);
    ADD_FAILURE() << "encoding did not throw";
  } catch (const SerializationError& e) {
    EXPECT_THAT(e.what(), HasSubstr("nesting deeper than"));
  }
  // Unwind iteratively: the default destructor would recurse as deep as the tree.
  auto flatten = [](Node& n) {
    std::vector<Node> pending;
    pending.swap(n.children);
    while (!pending.empty()) {
      std::vector<Node> next;
      for (auto& p : pending)
        for (auto& c : p.children) next.push_back(std::move(c));
      pending.swap(next);
    }
  };
  flatten(deep);

  // Hand-made: 100000 levels of "value, one child" would overflow the stack if followed.
  Bytes hostile;
  for (int i = 0; i < 100000; ++i) {
    const Bytes level = cat({raw({0, 0, 0, 0}), u64_bytes(1)});
    hostile.insert(hostile.end(), level.begin(), level.end());
  }
  EXPECT_THAT(decode_error<Node>(hostile), HasSubstr("nesting deeper than 1000 levels"));

  // Just inside the limit still works.
  Node ok;
  at = &ok;
  for (std::size_t i = 0; i + 1 < concur::detail::kMaxDepth; ++i) {
    at->children.emplace_back();
    at = &at->children.back();
  }
  Node back = round_trip(ok);
  flatten(ok);
  flatten(back);
}

TEST(SerializeErrors, FailedEncodeCanBeTakenBack) {
  Writer w;
  encode(w, 1);
  const std::size_t mark = w.size();
  const char* null = nullptr;
  EXPECT_THROW(encode(w, std::make_tuple(2, null)), SerializationError);
  w.truncate(mark);
  encode(w, 3);
  Reader r(w.bytes());
  EXPECT_EQ(decode<int>(r), 1);
  EXPECT_EQ(decode<int>(r), 3);
}

TEST(SerializeThreads, IndependentWritersAndReadersOnManyThreads) {
  // No shared state but cereal's version registry, which Versioned goes through.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &bad] {
      Writer w;
      for (int i = 0; i < 2000; ++i) {
        w.clear();
        const auto v = std::make_tuple(Versioned{t, i}, std::vector<int>(i % 17, t),
                                       std::string(static_cast<std::size_t>(i % 40), 'x'));
        encode(w, v);
        Reader r(w.bytes());
        if (decode<decltype(v)>(r) != v) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// ------------------------------------------------------------------ randomized

// Random and mutated bytes into decoders of nested types: each attempt either decodes or
// throws SerializationError; nothing else, no crash, no huge allocation.
template <class T>
void fuzz(std::uint32_t seed, const std::vector<T>& samples, int rounds) {
  std::mt19937 rng(seed);
  std::vector<Bytes> valid;
  for (const auto& s : samples) valid.push_back(dumps(s));
  auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
  int decoded = 0;
  g_probe_max = 0;
  g_probe_armed = true;
  for (int round = 0; round < rounds; ++round) {
    Bytes b;
    switch (round % 5) {
      case 0: {  // pure noise
        b.resize(pick(80));
        for (auto& x : b) x = static_cast<std::byte>(rng());
        break;
      }
      case 1: {  // flip bytes of a valid message
        b = valid[pick(valid.size())];
        if (b.empty()) break;
        for (int k = 0, flips = 1 + static_cast<int>(pick(4)); k < flips; ++k)
          b[pick(b.size())] ^= static_cast<std::byte>(1u << pick(8));
        break;
      }
      case 2: {  // plant a large length somewhere
        b = valid[pick(valid.size())];
        if (b.size() < 8) break;
        const std::uint64_t big[] = {std::uint64_t{1} << 62, 0xFFFFFFFFu, 1u << 20, 255,
                                     ~std::uint64_t{0}};
        std::memcpy(b.data() + pick(b.size() - 7), &big[pick(5)], 8);
        break;
      }
      case 3: {  // truncate or extend
        b = valid[pick(valid.size())];
        if (pick(2) == 0 && !b.empty()) b.resize(pick(b.size()));
        else b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size() + 1)), std::byte{0xFF});
        break;
      }
      default: {  // splice two messages
        const Bytes& x = valid[pick(valid.size())];
        const Bytes& y = valid[pick(valid.size())];
        b.assign(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(pick(x.size() + 1)));
        b.insert(b.end(), y.begin() + static_cast<std::ptrdiff_t>(pick(y.size() + 1)), y.end());
      }
    }
    try {
      static_cast<void>(loads<T>(b));
      ++decoded;
    } catch (const SerializationError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "seed " << seed << " round " << round << ": " << e.what();
    }
  }
  g_probe_armed = false;
  // Legitimate worst case: the empty-element budget's vector growth.
  EXPECT_LT(g_probe_max.load(), std::size_t{64} << 20);
  EXPECT_GT(decoded, 0);  // some mutations are harmless: the harness does decode
}

TEST(SerializeFuzz, NestedStandardTypes) {
  using A = std::map<std::string, std::vector<int>>;
  fuzz<A>(1, {A{}, A{{"k", {1, 2, 3}}, {"", {}}}, A{{"long key here", std::vector<int>(20, 7)}}},
          20000);
  using B = std::tuple<int, std::optional<std::string>,
                       std::variant<int, double, std::string, std::monostate>, std::vector<bool>>;
  fuzz<B>(2, {B{1, "x", 2.5, {true}}, B{0, std::nullopt, std::monostate{}, {}}, B{}}, 20000);
  using C = std::vector<std::optional<std::array<int, 100>>>;
  fuzz<C>(3, {C{std::nullopt, std::array<int, 100>{}}, C(10)}, 10000);
  using D = std::list<std::pair<std::string, std::set<int>>>;
  fuzz<D>(4, {D{{"a", {1, 2}}, {"b", {}}}}, 10000);
  using E = std::unordered_map<int, std::deque<std::u16string>>;
  fuzz<E>(5, {E{{1, {u"x", u"yy"}}, {2, {}}}}, 10000);
  using F = std::vector<std::vector<std::monostate>>;
  fuzz<F>(6, {F{{}, std::vector<std::monostate>(3)}}, 10000);
  using G = std::tuple<std::bitset<13>, bool, std::vector<std::bitset<3>>>;
  fuzz<G>(7, {G{std::bitset<13>(0x1ABC), true, {std::bitset<3>(5)}}}, 10000);
}

TEST(SerializeFuzz, CerealUserTypes) {
  fuzz<MemberSerialize>(11, {MemberSerialize{"n", {1, 2}, {{"w", 1.0}}}, MemberSerialize{}},
                        20000);
  Node tree{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}};
  fuzz<Node>(12, {tree, Node{}}, 20000);
  fuzz<std::vector<EmptyCereal>>(13, {std::vector<EmptyCereal>(4)}, 300);
  Everything e;
  e.s = "s";
  e.v = {1, 2};
  e.var = std::string("v");
  e.owned = std::make_unique<int>(3);
  e.q.push(1);
  std::vector<Everything> samples;
  samples.push_back(std::move(e));
  samples.emplace_back();
  fuzz<Everything>(14, samples, 10000);
}

}  // namespace
