// concur/detail/serialize_codec.hpp: how each type is encoded (see concur/serialize.hpp
// for the rules as users see them).
//
// Every type is classified once (kind_of) and gets a codec<T> with:
//   enc, dec          whether it can be encoded / decoded
//   enc_culprit, dec_culprit   the innermost type that makes enc / dec false (void if none),
//                     so that compile errors name the member that is at fault
//   decoded           what decode<T> returns (T, except std::array for a C array)
//   min_size          fewest bytes an encoded value occupies; bounds element counts read
//                     from hostile input before anything is allocated
//   fixed             the exact encoded size when it never varies, else npos; fixed-size
//                     elements are written and read with one bounds check per container
//                     through put(p, v) / get(p)
//   is_cereal         the value goes through a cereal archive
//   encode(w, v), decode(r)
//
// User types with cereal functions go through CerealOut / CerealIn, archives over the same
// Writer / Reader. Inside them the standard types are sent back to these codecs (the
// bridge overloads below), so a std::vector<int> is one length and a memcpy wherever it
// appears, and hostile lengths are checked by the same code.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <forward_list>
#include <functional>
#include <iterator>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <cereal/cereal.hpp>
#include <cereal/types/base_class.hpp>
#include <cereal/types/memory.hpp>  // cereal::memory_detail::PtrWrapper

#include "concur/detail/serialize_core.hpp"

namespace concur {
template <class T>
struct concur_type_is_not_serializable;
template <class T>
struct concur_cannot_decode_a_view;
}  // namespace concur

namespace concur::detail {

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

constexpr std::size_t sat_add(std::size_t a, std::size_t b) noexcept {
  return a > npos - b ? npos : a + b;
}
constexpr std::size_t sat_mul(std::size_t a, std::size_t b) noexcept {
  return (b != 0 && a > npos / b) ? npos : a * b;
}

inline void put_u64(std::byte* p, std::uint64_t v) noexcept { std::memcpy(p, &v, 8); }
inline std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void write_len(Writer& w, std::size_t n) { put_u64(w.grow(8), n); }
template <class Ctx>
std::size_t read_len(Reader& r) {
  return get_u64(r.take(8, type_name<Ctx>));
}

[[noreturn, gnu::cold]] void throw_bad_flag(unsigned value, std::string_view type);
[[noreturn, gnu::cold]] void throw_bad_index(std::uint64_t index, std::size_t count,
                                             std::string_view type);
[[noreturn, gnu::cold]] void throw_too_deep(std::string_view type, bool decoding);
[[noreturn, gnu::cold]] void throw_cereal(const char* what, std::string_view type, bool decoding);
[[noreturn, gnu::cold]] void throw_in_context(const SerializationError& e, std::string_view type);
[[noreturn, gnu::cold]] void throw_trailing(std::size_t left, std::string_view type);

// ------------------------------------------------------------------ cereal archives

// Only created when no archive is open on the Writer (nested user types share the
// outermost one), so versions and shared pointers are tracked once per message region,
// identically on both sides.
class CerealOut : public cereal::OutputArchive<CerealOut, cereal::AllowEmptyClassElision> {
 public:
  explicit CerealOut(Writer& w)
      : cereal::OutputArchive<CerealOut, cereal::AllowEmptyClassElision>(this), w_(w) {
    w_.set_archive(this);
  }
  ~CerealOut() { w_.set_archive(nullptr); }
  CerealOut(const CerealOut&) = delete;
  CerealOut& operator=(const CerealOut&) = delete;

  Writer& writer() noexcept { return w_; }
  void enter(std::string_view type) {
    if (++depth_ > kMaxDepth) throw_too_deep(type, false);
  }
  void leave() noexcept { --depth_; }

 private:
  Writer& w_;
  std::size_t depth_ = 0;
};

class CerealIn : public cereal::InputArchive<CerealIn, cereal::AllowEmptyClassElision> {
 public:
  explicit CerealIn(Reader& r)
      : cereal::InputArchive<CerealIn, cereal::AllowEmptyClassElision>(this), r_(r) {
    r_.set_archive(this);
  }
  ~CerealIn() { r_.set_archive(nullptr); }
  CerealIn(const CerealIn&) = delete;
  CerealIn& operator=(const CerealIn&) = delete;

  Reader& reader() noexcept { return r_; }
  void enter(std::string_view type) {
    if (++depth_ > kMaxDepth) throw_too_deep(type, true);
  }
  void leave() noexcept { --depth_; }

 private:
  Reader& r_;
  std::size_t depth_ = 0;
};

// Runs f(archive) in the open archive, or in a new one whose cereal::Exceptions become
// SerializationErrors.
template <class Ctx, class F>
void with_out_archive(Writer& w, F&& f) {
  if (CerealOut* ar = w.archive()) {
    f(*ar);
    return;
  }
  try {
    CerealOut ar(w);
    f(ar);
  } catch (const cereal::Exception& e) {
    throw_cereal(e.what(), type_name<Ctx>, false);
  }
}
template <class Ctx, class F>
void with_in_archive(Reader& r, F&& f) {
  if (CerealIn* ar = r.archive()) {
    f(*ar);
    return;
  }
  try {
    CerealIn ar(r);
    f(ar);
  } catch (const cereal::Exception& e) {
    throw_cereal(e.what(), type_name<Ctx>, true);
  }
}

// ------------------------------------------------------------------ classification

template <class T>
inline constexpr bool is_char_v =
    std::is_same_v<T, char> || std::is_same_v<T, wchar_t> || std::is_same_v<T, char8_t> ||
    std::is_same_v<T, char16_t> || std::is_same_v<T, char32_t>;

// Standard types that carry addresses or process-local state. cereal can save some of
// them (smart pointers, atomics); across processes they would silently mean something else.
template <class T>
struct is_denied : std::false_type {};
template <class T, class D>
struct is_denied<std::unique_ptr<T, D>> : std::true_type {};
template <class T>
struct is_denied<std::shared_ptr<T>> : std::true_type {};
template <class T>
struct is_denied<std::weak_ptr<T>> : std::true_type {};
template <class S>
struct is_denied<std::function<S>> : std::true_type {};
template <class T>
struct is_denied<std::reference_wrapper<T>> : std::true_type {};
template <class T>
struct is_denied<std::atomic<T>> : std::true_type {};

// cereal's own plumbing, which must not count as nesting.
template <class T>
struct is_cereal_wrapper : std::false_type {};
template <class T>
struct is_cereal_wrapper<cereal::NameValuePair<T>> : std::true_type {};
template <class T>
struct is_cereal_wrapper<cereal::SizeTag<T>> : std::true_type {};
template <class T>
struct is_cereal_wrapper<cereal::BinaryData<T>> : std::true_type {};
template <class T>
struct is_cereal_wrapper<cereal::base_class<T>> : std::true_type {};
template <class T>
struct is_cereal_wrapper<cereal::virtual_base_class<T>> : std::true_type {};
template <class T>
struct is_cereal_wrapper<cereal::memory_detail::PtrWrapper<T>> : std::true_type {};

template <class T>
struct family_codec {
  static constexpr bool is_family = false;
};

enum class kind { none, pointer, denied, cstring, c_array, family, cereal, boolean, plain };

template <class T>
consteval kind kind_of() {
  if constexpr (std::is_reference_v<T> || std::is_function_v<T> || std::is_void_v<T>) {
    return kind::none;
  } else if constexpr (std::is_pointer_v<T>) {
    return is_char_v<std::remove_cv_t<std::remove_pointer_t<T>>> ? kind::cstring
                                                                  : kind::pointer;
  } else if constexpr (std::is_member_pointer_v<T> || std::is_null_pointer_v<T>) {
    return kind::pointer;
  } else if constexpr (std::is_array_v<T>) {
    if constexpr (std::extent_v<T> == 0) return kind::none;
    else if constexpr (is_char_v<std::remove_cv_t<std::remove_extent_t<T>>>) return kind::cstring;
    else return kind::c_array;
  } else if constexpr (family_codec<T>::is_family) {
    return kind::family;
  } else if constexpr (is_denied<T>::value) {
    return kind::denied;
  } else if constexpr (std::is_same_v<T, bool>) {
    return kind::boolean;
  } else if constexpr ((std::is_class_v<T> || std::is_union_v<T>) &&
                       (cereal::traits::is_output_serializable<T, CerealOut>::value ||
                        cereal::traits::is_input_serializable<T, CerealIn>::value)) {
    // Checked before trivial copyability on purpose: a user who wrote cereal functions
    // for a type wants them used.
    return kind::cereal;
  } else if constexpr (std::is_trivially_copyable_v<T> && std::is_move_constructible_v<T>) {
    // The second test because g++ calls a type whose copies are all deleted (std::mutex)
    // trivially copyable.
    return kind::plain;
  } else {
    return kind::none;
  }
}

template <class T, kind K = kind_of<T>()>
struct codec_impl;
template <class T>
using codec = codec_impl<std::remove_cv_t<T>>;

// What decode<T> returns; for types that cannot be decoded, something that still lets a
// call compile far enough for the static_assert to be the first error.
template <class T>
using decoded_t = typename codec<T>::decoded;

template <class T>
struct no_codec {
  static constexpr bool enc = false, dec = false, is_cereal = false;
  static constexpr std::size_t min_size = 0, fixed = npos;
  using enc_culprit = T;
  using dec_culprit = T;
  using decoded = std::conditional_t<std::is_object_v<T> && !std::is_array_v<T> &&
                                         !std::is_abstract_v<T>,
                                     T, void>;
};
template <class T>
struct codec_impl<T, kind::none> : no_codec<T> {};
template <class T>
struct codec_impl<T, kind::pointer> : no_codec<T> {};
template <class T>
struct codec_impl<T, kind::denied> : no_codec<T> {};

template <bool Enc, class... Es>
struct first_culprit {
  using type = void;
};
template <bool Enc, class E, class... Es>
struct first_culprit<Enc, E, Es...> {
  using type = std::conditional_t<
      (Enc ? codec<E>::enc : codec<E>::dec), typename first_culprit<Enc, Es...>::type,
      std::conditional_t<Enc, typename codec<E>::enc_culprit, typename codec<E>::dec_culprit>>;
};

// enc / dec / culprits of a type made of Es.
template <class... Es>
struct made_of {
  static constexpr bool enc = (codec<Es>::enc && ...);
  static constexpr bool dec = (codec<Es>::dec && ...);
  using enc_culprit = typename first_culprit<true, Es...>::type;
  using dec_culprit = typename first_culprit<false, Es...>::type;
  static constexpr bool is_cereal = false;
};

// An element codec (for containers), dec only when the container itself can be built.
template <class C, class... Es>
struct container_of : made_of<Es...> {
  static constexpr bool dec = made_of<Es...>::dec && std::is_default_constructible_v<C>;
  using dec_culprit =
      std::conditional_t<dec, void,
                         std::conditional_t<made_of<Es...>::dec, C,
                                            typename made_of<Es...>::dec_culprit>>;
};

// ------------------------------------------------------------------ scalars

template <class T>
T load_plain(const std::byte* p) noexcept {
  if constexpr (std::is_default_constructible_v<T>) {
    T v;
    std::memcpy(static_cast<void*>(std::addressof(v)), p, sizeof(T));
    return v;
  } else {
    struct alignas(T) raw {
      std::byte b[sizeof(T)];
    } r;
    std::memcpy(&r, p, sizeof(T));
    return std::bit_cast<T>(r);
  }
}

// Trivially copyable, not bool: every bit pattern is accepted and the bytes are copied.
template <class T>
struct codec_impl<T, kind::plain> {
  static constexpr bool enc = true, dec = true, is_cereal = false;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = T;
  static constexpr bool large = sizeof(T) >= kOobThreshold;
  static constexpr std::size_t fixed = large ? npos : sizeof(T);
  static constexpr std::size_t min_size = large ? 16 : sizeof(T);

  static void put(std::byte* p, const T& v) noexcept {
    std::memcpy(p, static_cast<const void*>(std::addressof(v)), sizeof(T));
  }
  static T get(const std::byte* p) noexcept { return load_plain<T>(p); }
  static void encode(Writer& w, const T& v) {
    if constexpr (large) w.write_block(std::addressof(v), sizeof(T));
    else put(w.grow(sizeof(T)), v);
  }
  static T decode(Reader& r) {
    if constexpr (large) return get(r.read_block(sizeof(T), type_name<T>).data());
    else return get(r.take(sizeof(T), type_name<T>));
  }
};

// A byte that must be 0 or 1 (bool, optional's flag): anything else is corruption, and
// loading it into a bool would be undefined behaviour.
template <class Ctx>
bool get_flag(const std::byte* p) {
  const auto b = std::to_integer<unsigned>(*p);
  if (b > 1) [[unlikely]] throw_bad_flag(b, type_name<Ctx>);
  return b != 0;
}

template <class T>
struct codec_impl<T, kind::boolean> {
  static constexpr bool enc = true, dec = true, is_cereal = false;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = bool;
  static constexpr std::size_t fixed = 1, min_size = 1;
  static void put(std::byte* p, bool v) noexcept { *p = std::byte{v}; }
  static bool get(const std::byte* p) { return get_flag<bool>(p); }
  static void encode(Writer& w, bool v) { put(w.grow(1), v); }
  static bool decode(Reader& r) { return get(r.take(1, type_name<bool>)); }
};

// ------------------------------------------------------------------ element sequences

// Writes n elements of type E from `it` (no length).
template <class Ctx, class E, class It>
void encode_elements(Writer& w, It it, std::size_t n) {
  using C = codec<E>;
  if constexpr (C::fixed == 0) {
    w.charge_empty(n, sizeof(E), type_name<Ctx>);
  } else if constexpr (C::fixed != npos) {
    std::byte* p = w.grow(n * C::fixed);
    for (std::size_t i = 0; i < n; ++i, ++it, p += C::fixed) C::put(p, *it);
  } else {
    auto loop = [&] {
      for (std::size_t i = 0; i < n; ++i, ++it) {
        if constexpr (C::min_size == 0) {
          const std::size_t before = w.size();
          C::encode(w, *it);
          if (w.size() == before) w.charge_empty(1, sizeof(E), type_name<Ctx>);
        } else {
          C::encode(w, *it);
        }
      }
    };
    // One archive for all the elements rather than one each.
    if constexpr (C::is_cereal) with_out_archive<Ctx>(w, [&](CerealOut&) { loop(); });
    else loop();
  }
}

// Reads n elements of type E (count already read), handing each to emit(E&&).
template <class Ctx, class E, class Emit>
void decode_elements(Reader& r, std::size_t n, Emit&& emit) {
  using C = codec<E>;
  if constexpr (C::fixed == 0) {
    r.charge_empty(n, sizeof(E), type_name<Ctx>);
    for (std::size_t i = 0; i < n; ++i) emit(C::get(nullptr));
  } else if constexpr (C::fixed != npos) {
    if (n > r.remaining() / C::fixed) throw_too_long(n, r.remaining(), C::fixed, type_name<Ctx>);
    const std::byte* p = r.take(n * C::fixed, type_name<Ctx>);
    for (std::size_t i = 0; i < n; ++i, p += C::fixed) emit(C::get(p));
  } else {
    if constexpr (C::min_size > 0) {
      if (n > r.remaining() / C::min_size)
        throw_too_long(n, r.remaining(), C::min_size, type_name<Ctx>);
    }
    auto loop = [&] {
      for (std::size_t i = 0; i < n; ++i) {
        if constexpr (C::min_size == 0) {
          const std::size_t before = r.remaining();
          emit(C::decode(r));
          if (r.remaining() == before) r.charge_empty(1, sizeof(E), type_name<Ctx>);
        } else {
          emit(C::decode(r));
        }
      }
    };
    if constexpr (C::is_cereal) with_in_archive<Ctx>(r, [&](CerealIn&) { loop(); });
    else loop();
  }
}

// How many elements to reserve before decoding n of them: all of them unless that would
// cost far more memory than the remaining input justifies (then the container grows as
// elements actually arrive).
template <class E>
std::size_t reserve_hint(std::size_t n, std::size_t remaining) noexcept {
  const std::size_t budget = sat_add(sat_mul(remaining, 16), std::size_t{1} << 16) / sizeof(E);
  return n < budget ? n : budget;
}

// A plain (memcpy-able) element type for the contiguous fast path.
template <class E>
inline constexpr bool is_plain_v = kind_of<std::remove_cv_t<E>>() == kind::plain;

// Length + one block: the hot path for vectors and strings of trivially copyable values.
template <class Ctx, class E>
void encode_contiguous(Writer& w, const E* data, std::size_t n) {
  const std::size_t bytes = n * sizeof(E);
  if (bytes < kOobThreshold) [[likely]] {
    std::byte* p = w.grow(8 + bytes);
    put_u64(p, n);
    copy_bytes(p + 8, static_cast<const void*>(data), bytes);
  } else {
    write_len(w, n);
    w.write_block(data, bytes);
  }
}

struct contiguous_view {
  const std::byte* data;
  std::size_t count;
};
template <class Ctx, class E>
contiguous_view decode_contiguous(Reader& r) {
  const std::size_t n = read_len<Ctx>(r);
  if (n > npos / sizeof(E)) throw_too_long(n, r.remaining(), sizeof(E), type_name<Ctx>);
  return {r.read_block(n * sizeof(E), type_name<Ctx>).data(), n};
}

// A vector or string built from the bytes. In one pass (no zero fill before the copy) when
// the element type allows reading it in place; a large one is reserved first so that a
// destination that would make the copy stall (see copy_bytes) can be copied in pieces.
template <class V, class E>
V make_contiguous(const std::byte* p, std::size_t n) {
  const std::size_t bytes = n * sizeof(E);
  // Copy-constructing a trivially copyable element is a byte copy, so any such type
  // (also one with default member initialisers, which is not trivial) takes this path.
  if constexpr (std::is_trivially_copyable_v<E> && std::is_copy_constructible_v<E>) {
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(E) == 0) {
      const E* first = reinterpret_cast<const E*>(p);
      if (bytes < 2048) return V(first, first + n);
      V v;
      v.reserve(n);
      if (bytes >= kHugeBufferBytes) advise_huge_pages(v.data(), bytes);
      if (!copy_would_stall(v.data(), p, bytes)) {
        v.assign(first, first + n);
        return v;
      }
      // Appended in pieces: still one pass, no zero fill. The piece size is hidden from
      // the optimiser for the reason given in copy_in_pieces.
      std::size_t piece = sizeof(E) < 2048 ? 2048 / sizeof(E) : 1;
      __asm__("" : "+r"(piece));
      for (std::size_t k = 0; k < n; k += piece)
        v.insert(v.end(), first + k, first + (n - k < piece ? n : k + piece));
      return v;
    }
  }
  if constexpr (std::is_default_constructible_v<E>) {
    V v(n, E{});
    copy_bytes(static_cast<void*>(v.data()), p, bytes);
    return v;
  } else {
    V v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) v.push_back(load_plain<E>(p + i * sizeof(E)));
    return v;
  }
}

// ------------------------------------------------------------------ C strings and views

// const char* and character arrays (string literals): encode as std::basic_string, up to
// the first NUL.
template <class T>
struct codec_impl<T, kind::cstring> {
  using C = std::remove_cv_t<std::conditional_t<std::is_pointer_v<T>, std::remove_pointer_t<T>,
                                                std::remove_extent_t<T>>>;
  static constexpr bool enc = true, dec = false, is_cereal = false;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using enc_culprit = void;
  using dec_culprit = T;
  using decoded = std::conditional_t<std::is_pointer_v<T>, T, void>;
  static void encode(Writer& w, const T& v) {
    if constexpr (std::is_pointer_v<T>) {
      if (v == nullptr) throw_unencodable("a null C string", type_name<T>);
      encode_contiguous<T>(w, v, std::char_traits<C>::length(v));
    } else {
      std::size_t n = 0;
      while (n < std::extent_v<T> && v[n] != C{}) ++n;
      encode_contiguous<T>(w, v, n);
    }
  }
};

template <class C, class Tr>
struct family_codec<std::basic_string_view<C, Tr>> {
  using T = std::basic_string_view<C, Tr>;
  static constexpr bool is_family = true, enc = true, dec = false, is_cereal = false;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using enc_culprit = void;
  using dec_culprit = T;
  using decoded = T;
  static void encode(Writer& w, const T& v) { encode_contiguous<T>(w, v.data(), v.size()); }
};

template <class E, std::size_t Extent>
struct family_codec<std::span<E, Extent>> {
  using T = std::span<E, Extent>;
  using V = std::remove_cv_t<E>;
  static constexpr bool is_family = true, enc = codec<V>::enc, dec = false, is_cereal = false;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using enc_culprit = typename codec<V>::enc_culprit;
  using dec_culprit = T;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    if constexpr (is_plain_v<V>) {
      encode_contiguous<T>(w, v.data(), v.size());
    } else {
      write_len(w, v.size());
      encode_elements<T, V>(w, v.begin(), v.size());
    }
  }
};

// ------------------------------------------------------------------ strings and vectors

template <class C, class Tr, class A>
struct family_codec<std::basic_string<C, Tr, A>> : container_of<std::basic_string<C, Tr, A>, C> {
  using T = std::basic_string<C, Tr, A>;
  static_assert(is_plain_v<C>);
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) { encode_contiguous<T>(w, v.data(), v.size()); }
  static T decode(Reader& r) {
    const auto [p, n] = decode_contiguous<T, C>(r);
    return make_contiguous<T, C>(p, n);
  }
};

template <class E, class A>
struct family_codec<std::vector<E, A>> : container_of<std::vector<E, A>, E> {
  using T = std::vector<E, A>;
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    if constexpr (is_plain_v<E>) {
      encode_contiguous<T>(w, v.data(), v.size());
    } else {
      write_len(w, v.size());
      encode_elements<T, E>(w, v.begin(), v.size());
    }
  }
  static T decode(Reader& r) {
    if constexpr (is_plain_v<E>) {
      const auto [p, n] = decode_contiguous<T, E>(r);
      return make_contiguous<T, E>(p, n);
    } else {
      const std::size_t n = read_len<T>(r);
      T v;
      v.reserve(reserve_hint<E>(n, r.remaining()));
      decode_elements<T, E>(r, n, [&](E&& e) { v.push_back(std::move(e)); });
      return v;
    }
  }
};

// Bits packed eight to a byte, least significant first; unused high bits must be zero.
template <class A>
struct family_codec<std::vector<bool, A>> : container_of<std::vector<bool, A>, bool> {
  using T = std::vector<bool, A>;
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    const std::size_t n = v.size();
    write_len(w, n);
    std::byte* p = w.grow(n / 8 + (n % 8 != 0));
    for (std::size_t i = 0; i < n; i += 8) {
      unsigned b = 0;
      for (std::size_t k = 0; k < 8 && i + k < n; ++k) b |= static_cast<unsigned>(v[i + k]) << k;
      *p++ = static_cast<std::byte>(b);
    }
  }
  static T decode(Reader& r) {
    const std::size_t n = read_len<T>(r);
    const std::size_t bytes = n / 8 + (n % 8 != 0);
    const std::byte* p = r.take(bytes, type_name<T>);
    if (n % 8 != 0 && (std::to_integer<unsigned>(p[bytes - 1]) >> (n % 8)) != 0)
      throw_corrupt("unused bits of the last byte are set", type_name<T>);
    T v(n);
    for (std::size_t i = 0; i < bytes; ++i) {
      const auto b = std::to_integer<unsigned>(p[i]);
      for (unsigned k = 0; k < 8; ++k)
        if (b >> k & 1u) v[i * 8 + k] = true;
    }
    return v;
  }
};

// ------------------------------------------------------------------ arrays

// std::array<E, N> (and C arrays, decoded as std::array). Plain elements make the whole
// array one block.
template <class E, std::size_t N>
struct array_codec : made_of<E> {
  using T = std::array<E, N>;
  using C = codec<E>;
  static constexpr bool dec = C::dec && std::is_default_constructible_v<E>;
  using decoded = T;
  static constexpr std::size_t fixed = C::fixed == npos ? npos : N * C::fixed;
  static constexpr std::size_t min_size = sat_mul(N, C::min_size);

  static void put(std::byte* p, const T& a) {
    for (std::size_t i = 0; i < N; ++i) C::put(p + i * C::fixed, a[i]);
  }
  static T get(const std::byte* p) {
    T a;
    for (std::size_t i = 0; i < N; ++i) a[i] = C::get(p + i * C::fixed);
    return a;
  }
  template <class Src>  // E const* or std::array
  static void encode_from(Writer& w, const Src& a) {
    if constexpr (fixed != npos) {
      std::byte* p = w.grow(fixed);
      for (std::size_t i = 0; i < N; ++i, p += C::fixed) C::put(p, a[i]);
    } else {
      for (std::size_t i = 0; i < N; ++i) C::encode(w, a[i]);
    }
  }
  static void encode(Writer& w, const T& a) { encode_from(w, a); }
  static T decode(Reader& r) {
    if constexpr (fixed != npos) {
      return get(r.take(fixed, type_name<T>));
    } else {
      T a;
      for (E& e : a) e = C::decode(r);
      return a;
    }
  }
};

template <class E, std::size_t N>
struct family_codec<std::array<E, N>>
    : std::conditional_t<is_plain_v<E>, codec_impl<std::array<E, N>, kind::plain>,
                         array_codec<E, N>> {
  static constexpr bool is_family = true;
};

// The std::array a C array decodes as (int[2][3] -> std::array<std::array<int, 3>, 2>).
template <class T>
struct c_array_decoded {
  using type = void;
};
template <class E, std::size_t N>
  requires(codec<E>::dec)
struct c_array_decoded<E[N]> {
  using type = std::array<decoded_t<E>, N>;
};

template <class T>
struct codec_impl<T, kind::c_array> {
  using E = std::remove_cv_t<std::remove_extent_t<T>>;
  static constexpr std::size_t N = std::extent_v<T>;
  using decoded = typename c_array_decoded<std::remove_cv_t<T>>::type;
  using D = codec<std::conditional_t<std::is_void_v<decoded>, std::array<int, 1>, decoded>>;
  static constexpr bool enc = codec<E>::enc;
  static constexpr bool dec = !std::is_void_v<decoded> && D::dec;
  using enc_culprit = typename codec<E>::enc_culprit;
  using dec_culprit = typename codec<E>::dec_culprit;
  static constexpr bool is_cereal = false;
  // Trivially copyable all the way down: one memcpy, the same bytes as the std::array.
  static constexpr bool whole = is_plain_v<std::remove_all_extents_t<T>>;
  static constexpr std::size_t fixed = whole ? (sizeof(T) >= kOobThreshold ? npos : sizeof(T))
                                             : (codec<E>::fixed == npos ? npos : N * codec<E>::fixed);
  static constexpr std::size_t min_size = whole ? (fixed == npos ? 16 : sizeof(T))
                                                : sat_mul(N, codec<E>::min_size);

  static void put(std::byte* p, const T& a) {
    if constexpr (whole) {
      std::memcpy(p, a, sizeof(T));
    } else {
      for (std::size_t i = 0; i < N; ++i) codec<E>::put(p + i * codec<E>::fixed, a[i]);
    }
  }
  static decoded get(const std::byte* p) { return D::get(p); }
  static void encode(Writer& w, const T& a) {
    if constexpr (whole) {
      static_assert(!dec || sizeof(decoded) == sizeof(T));
      if constexpr (fixed == npos) w.write_block(a, sizeof(T));
      else std::memcpy(w.grow(sizeof(T)), a, sizeof(T));
    } else {
      array_codec<E, N>::encode_from(w, a);
    }
  }
  static decoded decode(Reader& r) { return D::decode(r); }
};

// ------------------------------------------------------------------ node containers

template <class T, class E>
struct sequence_codec : container_of<T, E> {
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    const std::size_t n = static_cast<std::size_t>(std::distance(v.begin(), v.end()));
    write_len(w, n);
    encode_elements<T, E>(w, v.begin(), n);
  }
  static T decode(Reader& r) {
    const std::size_t n = read_len<T>(r);
    T v;
    if constexpr (requires { v.before_begin(); }) {
      auto at = v.before_begin();
      decode_elements<T, E>(r, n, [&](E&& e) { at = v.emplace_after(at, std::move(e)); });
    } else {
      decode_elements<T, E>(r, n, [&](E&& e) { v.push_back(std::move(e)); });
    }
    return v;
  }
};
template <class E, class A>
struct family_codec<std::deque<E, A>> : sequence_codec<std::deque<E, A>, E> {};
template <class E, class A>
struct family_codec<std::list<E, A>> : sequence_codec<std::list<E, A>, E> {};
template <class E, class A>
struct family_codec<std::forward_list<E, A>> : sequence_codec<std::forward_list<E, A>, E> {};

// Maps and sets: encoded as their elements in iteration order. Ordered containers are
// rebuilt with end() hints (linear for sorted input); duplicates in hostile input just
// collapse as the container's insert rules say.
template <class T, class Wire, bool Unordered>
T decode_associative(Reader& r) {
  const std::size_t n = read_len<T>(r);
  T v;
  if constexpr (Unordered) v.reserve(reserve_hint<Wire>(n, r.remaining()));
  decode_elements<T, Wire>(r, n, [&](Wire&& e) {
    if constexpr (Unordered) v.emplace(std::move(e));
    else v.emplace_hint(v.end(), std::move(e));
  });
  return v;
}

template <class T, class K, class V, bool Unordered>
struct map_codec : container_of<T, K, V> {
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    write_len(w, v.size());
    encode_elements<T, std::pair<const K, V>>(w, v.begin(), v.size());
  }
  static T decode(Reader& r) { return decode_associative<T, std::pair<K, V>, Unordered>(r); }
};

template <class T, class K, bool Unordered>
struct set_codec : container_of<T, K> {
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    write_len(w, v.size());
    encode_elements<T, K>(w, v.begin(), v.size());
  }
  static T decode(Reader& r) { return decode_associative<T, K, Unordered>(r); }
};

template <class K, class V, class C, class A>
struct family_codec<std::map<K, V, C, A>> : map_codec<std::map<K, V, C, A>, K, V, false> {};
template <class K, class V, class C, class A>
struct family_codec<std::multimap<K, V, C, A>>
    : map_codec<std::multimap<K, V, C, A>, K, V, false> {};
template <class K, class V, class H, class E, class A>
struct family_codec<std::unordered_map<K, V, H, E, A>>
    : map_codec<std::unordered_map<K, V, H, E, A>, K, V, true> {};
template <class K, class V, class H, class E, class A>
struct family_codec<std::unordered_multimap<K, V, H, E, A>>
    : map_codec<std::unordered_multimap<K, V, H, E, A>, K, V, true> {};
template <class K, class C, class A>
struct family_codec<std::set<K, C, A>> : set_codec<std::set<K, C, A>, K, false> {};
template <class K, class C, class A>
struct family_codec<std::multiset<K, C, A>> : set_codec<std::multiset<K, C, A>, K, false> {};
template <class K, class H, class E, class A>
struct family_codec<std::unordered_set<K, H, E, A>>
    : set_codec<std::unordered_set<K, H, E, A>, K, true> {};
template <class K, class H, class E, class A>
struct family_codec<std::unordered_multiset<K, H, E, A>>
    : set_codec<std::unordered_multiset<K, H, E, A>, K, true> {};

// ------------------------------------------------------------------ sum and product types

template <class E>
struct family_codec<std::optional<E>> : made_of<E> {
  using T = std::optional<E>;
  static constexpr bool is_family = true;
  static constexpr std::size_t min_size = 1, fixed = npos;
  using decoded = T;
  static void encode(Writer& w, const T& v) {
    *w.grow(1) = std::byte{v.has_value()};
    if (v) codec<E>::encode(w, *v);
  }
  static T decode(Reader& r) {
    if (!get_flag<T>(r.take(1, type_name<T>))) return std::nullopt;
    return T(std::in_place, codec<E>::decode(r));
  }
};

template <>
struct family_codec<std::monostate> {
  static constexpr bool is_family = true, enc = true, dec = true, is_cereal = false;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = std::monostate;
  static constexpr std::size_t fixed = 0, min_size = 0;
  static void put(std::byte*, std::monostate) noexcept {}
  static std::monostate get(const std::byte*) noexcept { return {}; }
  static void encode(Writer&, std::monostate) noexcept {}
  static std::monostate decode(Reader&) noexcept { return {}; }
};

// The alternative's index (one byte unless there are more than 255), then its value.
template <class... Es>
struct family_codec<std::variant<Es...>> : made_of<Es...> {
  using T = std::variant<Es...>;
  static constexpr bool is_family = true;
  static constexpr std::size_t fixed = npos;
  using decoded = T;
  static constexpr std::size_t count = sizeof...(Es);
  using index_t = std::conditional_t<(count < 256), std::uint8_t, std::uint32_t>;
  static constexpr std::size_t min_size = sizeof(index_t) + [] {
    std::size_t m = npos;
    ((m = codec<Es>::min_size < m ? codec<Es>::min_size : m), ...);
    return m;
  }();

  static void encode(Writer& w, const T& v) {
    if (v.valueless_by_exception()) throw_unencodable("a valueless variant", type_name<T>);
    const auto index = static_cast<index_t>(v.index());
    std::memcpy(w.grow(sizeof index), &index, sizeof index);
    encode_alt(w, v, std::make_index_sequence<count>{});
  }
  static T decode(Reader& r) {
    index_t index;
    std::memcpy(&index, r.take(sizeof index, type_name<T>), sizeof index);
    if (index >= count) throw_bad_index(index, count, type_name<T>);
    return decode_alt(r, index, std::make_index_sequence<count>{});
  }

 private:
  template <std::size_t... I>
  static void encode_alt(Writer& w, const T& v, std::index_sequence<I...>) {
    static_cast<void>(((v.index() == I ? (codec<Es>::encode(w, *std::get_if<I>(&v)), true)
                                       : false) ||
                       ...));
  }
  template <std::size_t I>
  static T decode_one(Reader& r) {
    return T(std::in_place_index<I>, codec<std::variant_alternative_t<I, T>>::decode(r));
  }
  template <std::size_t... I>
  static T decode_alt(Reader& r, std::size_t index, std::index_sequence<I...>) {
    static constexpr T (*table[])(Reader&) = {&decode_one<I>...};
    return table[index](r);
  }
};

// Members in order; when all are fixed-size the whole product is, so a tuple<long,
// double> costs one bounds check.
template <class T, class... Es>
struct product_codec : made_of<Es...> {
  static constexpr bool is_family = true;
  using decoded = T;
  static constexpr bool all_fixed = ((codec<Es>::fixed != npos) && ...);
  static constexpr std::size_t fixed = all_fixed ? (std::size_t{0} + ... + codec<Es>::fixed) : npos;
  static constexpr std::size_t min_size = [] {
    std::size_t s = 0;
    ((s = sat_add(s, codec<Es>::min_size)), ...);
    return s;
  }();
  static constexpr std::array<std::size_t, sizeof...(Es) + 1> offsets = [] {
    std::array<std::size_t, sizeof...(Es) + 1> o{};
    std::size_t i = 0;
    ((o[i + 1] = o[i] + (codec<Es>::fixed == npos ? 0 : codec<Es>::fixed), ++i), ...);
    return o;
  }();

  static void put(std::byte* p, const T& v) { put_all(p, v, std::index_sequence_for<Es...>{}); }
  static T get(const std::byte* p) { return get_all(p, std::index_sequence_for<Es...>{}); }
  static void encode(Writer& w, const T& v) {
    if constexpr (all_fixed) {
      put(w.grow(fixed), v);
    } else {
      std::apply([&](const auto&... e) { (codec<Es>::encode(w, e), ...); }, v);
    }
  }
  static T decode(Reader& r) {
    if constexpr (all_fixed) {
      return get(r.take(fixed, type_name<T>));
    } else {
      return T{codec<Es>::decode(r)...};  // braces: left to right
    }
  }

 private:
  template <std::size_t... I>
  static void put_all([[maybe_unused]] std::byte* p, [[maybe_unused]] const T& v,
                      std::index_sequence<I...>) {
    (codec<Es>::put(p + offsets[I], std::get<I>(v)), ...);
  }
  template <std::size_t... I>
  static T get_all([[maybe_unused]] const std::byte* p, std::index_sequence<I...>) {
    return T{codec<Es>::get(p + offsets[I])...};
  }
};
template <class... Es>
struct family_codec<std::tuple<Es...>> : product_codec<std::tuple<Es...>, Es...> {};
template <class A, class B>
struct family_codec<std::pair<A, B>> : product_codec<std::pair<A, B>, A, B> {};

template <class R, class P>
struct family_codec<std::chrono::duration<R, P>> : made_of<R> {
  using T = std::chrono::duration<R, P>;
  using C = codec<R>;
  static constexpr bool is_family = true;
  static constexpr std::size_t fixed = C::fixed, min_size = C::min_size;
  using decoded = T;
  static void put(std::byte* p, const T& v) { C::put(p, v.count()); }
  static T get(const std::byte* p) { return T(C::get(p)); }
  static void encode(Writer& w, const T& v) { C::encode(w, v.count()); }
  static T decode(Reader& r) { return T(C::decode(r)); }
};

template <class Clock, class D>
struct family_codec<std::chrono::time_point<Clock, D>> : made_of<D> {
  using T = std::chrono::time_point<Clock, D>;
  using C = codec<D>;
  static constexpr bool is_family = true;
  static constexpr std::size_t fixed = C::fixed, min_size = C::min_size;
  using decoded = T;
  static void put(std::byte* p, const T& v) { C::put(p, v.time_since_epoch()); }
  static T get(const std::byte* p) { return T(C::get(p)); }
  static void encode(Writer& w, const T& v) { C::encode(w, v.time_since_epoch()); }
  static T decode(Reader& r) { return T(C::decode(r)); }
};

template <class E>
struct family_codec<std::complex<E>> : made_of<E> {
  using T = std::complex<E>;
  using C = codec<E>;
  static constexpr bool is_family = true;
  static constexpr std::size_t fixed = C::fixed == npos ? npos : 2 * C::fixed;
  static constexpr std::size_t min_size = 2 * C::min_size;
  using decoded = T;
  static void put(std::byte* p, const T& v) {
    C::put(p, v.real());
    C::put(p + C::fixed, v.imag());
  }
  static T get(const std::byte* p) { return T(C::get(p), C::get(p + C::fixed)); }
  static void encode(Writer& w, const T& v) {
    C::encode(w, v.real());
    C::encode(w, v.imag());
  }
  static T decode(Reader& r) {
    E re = C::decode(r);
    return T(re, C::decode(r));
  }
};

// Bits packed like std::vector<bool>, without a length.
template <std::size_t N>
struct family_codec<std::bitset<N>> {
  using T = std::bitset<N>;
  static constexpr bool is_family = true, enc = true, dec = true, is_cereal = false;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = T;
  static constexpr std::size_t fixed = (N + 7) / 8, min_size = fixed;
  static void put(std::byte* p, const T& v) {
    for (std::size_t i = 0; i < N; i += 8) {
      unsigned b = 0;
      for (std::size_t k = 0; k < 8 && i + k < N; ++k) b |= static_cast<unsigned>(v[i + k]) << k;
      *p++ = static_cast<std::byte>(b);
    }
  }
  static T get(const std::byte* p) {
    if constexpr (N % 8 != 0) {
      if ((std::to_integer<unsigned>(p[fixed - 1]) >> (N % 8)) != 0)
        throw_corrupt("unused bits of the last byte are set", type_name<T>);
    }
    T v;
    for (std::size_t i = 0; i < fixed; ++i) {
      const auto b = std::to_integer<unsigned>(p[i]);
      for (unsigned k = 0; k < 8; ++k)
        if (b >> k & 1u) v.set(i * 8 + k);
    }
    return v;
  }
  static void encode(Writer& w, const T& v) { put(w.grow(fixed), v); }
  static T decode(Reader& r) { return get(r.take(fixed, type_name<T>)); }
};

template <class T>
struct codec_impl<T, kind::family> : family_codec<T> {};

// ------------------------------------------------------------------ cereal user types

template <class T>
struct codec_impl<T, kind::cereal> {
  static constexpr bool enc = cereal::traits::is_output_serializable<T, CerealOut>::value;
  static constexpr bool dec = cereal::traits::is_input_serializable<T, CerealIn>::value &&
                              std::is_default_constructible_v<T> &&
                              std::is_move_constructible_v<T>;
  static constexpr bool is_cereal = true;
  using enc_culprit = T;
  using dec_culprit = T;
  using decoded = T;
  static constexpr std::size_t fixed = npos, min_size = 0;

  static void encode(Writer& w, const T& v) {
    with_out_archive<T>(w, [&](CerealOut& ar) { ar(v); });
  }
  static T decode(Reader& r) {
    T v{};
    with_in_archive<T>(r, [&](CerealIn& ar) { ar(v); });
    return v;
  }
};

// ------------------------------------------------------------------ archive overloads
// Found by argument-dependent lookup from inside cereal: the archive types live here.

template <class T>
  requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const T& v) {
  codec<T>::encode(ar.writer(), v);
}
template <class T>
  requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, T& v) {
  v = codec<T>::decode(ar.reader());
}

template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(CerealOut& ar, cereal::NameValuePair<T>& nvp) {
  ar(nvp.value);
}
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(CerealIn& ar, cereal::NameValuePair<T>& nvp) {
  ar(nvp.value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const cereal::SizeTag<T>& tag) {
  write_len(ar.writer(), static_cast<std::size_t>(tag.size));
}
// Only containers that cereal handles itself get here (the standard ones are bridged
// below); with no element type at hand, at most one element per remaining byte.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, cereal::SizeTag<T>& tag) {
  Reader& r = ar.reader();
  const std::size_t n = read_len<cereal::SizeTag<T>>(r);
  if (n > r.remaining()) throw_too_long(n, r.remaining(), 1, "a container saved by cereal");
  tag.size = static_cast<std::remove_reference_t<T>>(n);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const cereal::BinaryData<T>& bd) {
  ar.writer().write_block(bd.data, static_cast<std::size_t>(bd.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, cereal::BinaryData<T>& bd) {
  using E = std::remove_cv_t<std::remove_pointer_t<std::decay_t<T>>>;
  const std::size_t n = static_cast<std::size_t>(bd.size);
  const std::byte* p = ar.reader().read_block(n, type_name<E>).data();
  if constexpr (std::is_same_v<E, bool>) {
    for (std::size_t i = 0; i < n; ++i) get_flag<bool>(p + i);
  }
  copy_bytes(bd.data, p, n);
}

// Nesting depth of user types, counted where cereal enters and leaves each value.
template <class T>
consteval bool counts_depth() {
  if constexpr (is_cereal_wrapper<T>::value) return false;
  else return kind_of<std::remove_cv_t<T>>() == kind::cereal;
}
template <class T>
void prologue(CerealOut& ar, const T&) {
  if constexpr (counts_depth<T>()) ar.enter(type_name<T>);
}
template <class T>
void epilogue(CerealOut& ar, const T&) {
  if constexpr (counts_depth<T>()) ar.leave();
}
template <class T>
void prologue(CerealIn& ar, const T&) {
  if constexpr (counts_depth<T>()) ar.enter(type_name<T>);
}
template <class T>
void epilogue(CerealIn& ar, const T&) {
  if constexpr (counts_depth<T>()) ar.leave();
}

// The bridge: standard types met inside a user's cereal function use our codecs, so they
// are encoded as they are everywhere else and hostile lengths meet the same checks. Each
// overload is more specialised than cereal's for the same type (same parameter shape,
// concrete archive) and drops out, leaving cereal's, when our codec cannot handle the
// element type.
template <class T>
inline constexpr bool bridge_save = codec<T>::enc;
template <class T>
inline constexpr bool bridge_load = codec<T>::dec && std::is_move_assignable_v<T>;

template <class C, class Tr, class A>
  requires bridge_save<std::basic_string<C, Tr, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::basic_string<C, Tr, A>& v) {
  codec<std::basic_string<C, Tr, A>>::encode(ar.writer(), v);
}
template <class C, class Tr, class A>
  requires bridge_load<std::basic_string<C, Tr, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::basic_string<C, Tr, A>& v) {
  v = codec<std::basic_string<C, Tr, A>>::decode(ar.reader());
}
template <class E, class A>
  requires bridge_save<std::vector<E, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::vector<E, A>& v) {
  codec<std::vector<E, A>>::encode(ar.writer(), v);
}
template <class E, class A>
  requires bridge_load<std::vector<E, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::vector<E, A>& v) {
  v = codec<std::vector<E, A>>::decode(ar.reader());
}
template <class A>
  requires bridge_save<std::vector<bool, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::vector<bool, A>& v) {
  codec<std::vector<bool, A>>::encode(ar.writer(), v);
}
template <class A>
  requires bridge_load<std::vector<bool, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::vector<bool, A>& v) {
  v = codec<std::vector<bool, A>>::decode(ar.reader());
}
template <class E, std::size_t N>
  requires bridge_save<std::array<E, N>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::array<E, N>& v) {
  codec<std::array<E, N>>::encode(ar.writer(), v);
}
template <class E, std::size_t N>
  requires bridge_load<std::array<E, N>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::array<E, N>& v) {
  v = codec<std::array<E, N>>::decode(ar.reader());
}
template <class E, class A>
  requires bridge_save<std::deque<E, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::deque<E, A>& v) {
  codec<std::deque<E, A>>::encode(ar.writer(), v);
}
template <class E, class A>
  requires bridge_load<std::deque<E, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::deque<E, A>& v) {
  v = codec<std::deque<E, A>>::decode(ar.reader());
}
template <class E, class A>
  requires bridge_save<std::list<E, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::list<E, A>& v) {
  codec<std::list<E, A>>::encode(ar.writer(), v);
}
template <class E, class A>
  requires bridge_load<std::list<E, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::list<E, A>& v) {
  v = codec<std::list<E, A>>::decode(ar.reader());
}
template <class E, class A>
  requires bridge_save<std::forward_list<E, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::forward_list<E, A>& v) {
  codec<std::forward_list<E, A>>::encode(ar.writer(), v);
}
template <class E, class A>
  requires bridge_load<std::forward_list<E, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::forward_list<E, A>& v) {
  v = codec<std::forward_list<E, A>>::decode(ar.reader());
}
template <class K, class V, class C, class A>
  requires bridge_save<std::map<K, V, C, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::map<K, V, C, A>& v) {
  codec<std::map<K, V, C, A>>::encode(ar.writer(), v);
}
template <class K, class V, class C, class A>
  requires bridge_load<std::map<K, V, C, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::map<K, V, C, A>& v) {
  v = codec<std::map<K, V, C, A>>::decode(ar.reader());
}
template <class K, class V, class C, class A>
  requires bridge_save<std::multimap<K, V, C, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::multimap<K, V, C, A>& v) {
  codec<std::multimap<K, V, C, A>>::encode(ar.writer(), v);
}
template <class K, class V, class C, class A>
  requires bridge_load<std::multimap<K, V, C, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::multimap<K, V, C, A>& v) {
  v = codec<std::multimap<K, V, C, A>>::decode(ar.reader());
}
template <class K, class V, class H, class Eq, class A>
  requires bridge_save<std::unordered_map<K, V, H, Eq, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::unordered_map<K, V, H, Eq, A>& v) {
  codec<std::unordered_map<K, V, H, Eq, A>>::encode(ar.writer(), v);
}
template <class K, class V, class H, class Eq, class A>
  requires bridge_load<std::unordered_map<K, V, H, Eq, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::unordered_map<K, V, H, Eq, A>& v) {
  v = codec<std::unordered_map<K, V, H, Eq, A>>::decode(ar.reader());
}
template <class K, class V, class H, class Eq, class A>
  requires bridge_save<std::unordered_multimap<K, V, H, Eq, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::unordered_multimap<K, V, H, Eq, A>& v) {
  codec<std::unordered_multimap<K, V, H, Eq, A>>::encode(ar.writer(), v);
}
template <class K, class V, class H, class Eq, class A>
  requires bridge_load<std::unordered_multimap<K, V, H, Eq, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::unordered_multimap<K, V, H, Eq, A>& v) {
  v = codec<std::unordered_multimap<K, V, H, Eq, A>>::decode(ar.reader());
}
template <class K, class C, class A>
  requires bridge_save<std::set<K, C, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::set<K, C, A>& v) {
  codec<std::set<K, C, A>>::encode(ar.writer(), v);
}
template <class K, class C, class A>
  requires bridge_load<std::set<K, C, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::set<K, C, A>& v) {
  v = codec<std::set<K, C, A>>::decode(ar.reader());
}
template <class K, class C, class A>
  requires bridge_save<std::multiset<K, C, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::multiset<K, C, A>& v) {
  codec<std::multiset<K, C, A>>::encode(ar.writer(), v);
}
template <class K, class C, class A>
  requires bridge_load<std::multiset<K, C, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::multiset<K, C, A>& v) {
  v = codec<std::multiset<K, C, A>>::decode(ar.reader());
}
template <class K, class H, class Eq, class A>
  requires bridge_save<std::unordered_set<K, H, Eq, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::unordered_set<K, H, Eq, A>& v) {
  codec<std::unordered_set<K, H, Eq, A>>::encode(ar.writer(), v);
}
template <class K, class H, class Eq, class A>
  requires bridge_load<std::unordered_set<K, H, Eq, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::unordered_set<K, H, Eq, A>& v) {
  v = codec<std::unordered_set<K, H, Eq, A>>::decode(ar.reader());
}
template <class K, class H, class Eq, class A>
  requires bridge_save<std::unordered_multiset<K, H, Eq, A>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::unordered_multiset<K, H, Eq, A>& v) {
  codec<std::unordered_multiset<K, H, Eq, A>>::encode(ar.writer(), v);
}
template <class K, class H, class Eq, class A>
  requires bridge_load<std::unordered_multiset<K, H, Eq, A>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::unordered_multiset<K, H, Eq, A>& v) {
  v = codec<std::unordered_multiset<K, H, Eq, A>>::decode(ar.reader());
}
template <class E>
  requires bridge_save<std::optional<E>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::optional<E>& v) {
  codec<std::optional<E>>::encode(ar.writer(), v);
}
template <class E>
  requires bridge_load<std::optional<E>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::optional<E>& v) {
  v = codec<std::optional<E>>::decode(ar.reader());
}
template <class R, class P>
  requires bridge_save<std::chrono::duration<R, P>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::chrono::duration<R, P>& v) {
  codec<std::chrono::duration<R, P>>::encode(ar.writer(), v);
}
template <class R, class P>
  requires bridge_load<std::chrono::duration<R, P>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::chrono::duration<R, P>& v) {
  v = codec<std::chrono::duration<R, P>>::decode(ar.reader());
}
template <class Clock, class D>
  requires bridge_save<std::chrono::time_point<Clock, D>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::chrono::time_point<Clock, D>& v) {
  codec<std::chrono::time_point<Clock, D>>::encode(ar.writer(), v);
}
template <class Clock, class D>
  requires bridge_load<std::chrono::time_point<Clock, D>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::chrono::time_point<Clock, D>& v) {
  v = codec<std::chrono::time_point<Clock, D>>::decode(ar.reader());
}
template <class E>
  requires bridge_save<std::complex<E>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::complex<E>& v) {
  codec<std::complex<E>>::encode(ar.writer(), v);
}
template <class E>
  requires bridge_load<std::complex<E>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::complex<E>& v) {
  v = codec<std::complex<E>>::decode(ar.reader());
}
template <std::size_t N>
  requires bridge_save<std::bitset<N>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::bitset<N>& v) {
  codec<std::bitset<N>>::encode(ar.writer(), v);
}
template <std::size_t N>
  requires bridge_load<std::bitset<N>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::bitset<N>& v) {
  v = codec<std::bitset<N>>::decode(ar.reader());
}
// cereal's shapes: save takes variant<T1, Ts...>, load variant<Ts...>; tuple and pair
// use serialize.
template <class E1, class... Es>
  requires bridge_save<std::variant<E1, Es...>>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const std::variant<E1, Es...>& v) {
  codec<std::variant<E1, Es...>>::encode(ar.writer(), v);
}
template <class... Es>
  requires bridge_load<std::variant<Es...>>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, std::variant<Es...>& v) {
  v = codec<std::variant<Es...>>::decode(ar.reader());
}
template <class... Es>
  requires bridge_save<std::tuple<Es...>>
void CEREAL_SERIALIZE_FUNCTION_NAME(CerealOut& ar, std::tuple<Es...>& v) {
  codec<std::tuple<Es...>>::encode(ar.writer(), v);
}
template <class... Es>
  requires bridge_load<std::tuple<Es...>>
void CEREAL_SERIALIZE_FUNCTION_NAME(CerealIn& ar, std::tuple<Es...>& v) {
  v = codec<std::tuple<Es...>>::decode(ar.reader());
}
template <class A, class B>
  requires bridge_save<std::pair<A, B>>
void CEREAL_SERIALIZE_FUNCTION_NAME(CerealOut& ar, std::pair<A, B>& v) {
  codec<std::pair<A, B>>::encode(ar.writer(), v);
}
template <class A, class B>
  requires bridge_load<std::pair<A, B>>
void CEREAL_SERIALIZE_FUNCTION_NAME(CerealIn& ar, std::pair<A, B>& v) {
  v = codec<std::pair<A, B>>::decode(ar.reader());
}

}  // namespace concur::detail

// ------------------------------------------------------------------ compile-time errors

namespace concur::detail {
template <class T>
struct dependent_false : std::false_type {};

template <class T>
struct is_view_source : std::bool_constant<kind_of<std::remove_cv_t<T>>() == kind::cstring> {};
template <class C, class Tr>
struct is_view_source<std::basic_string_view<C, Tr>> : std::true_type {};
template <class E, std::size_t N>
struct is_view_source<std::span<E, N>> : std::true_type {};

// Types whose error has its own, more precise message below.
template <class T>
struct has_specific_reason
    : std::bool_constant<std::is_pointer_v<T> || std::is_member_pointer_v<T> ||
                         std::is_null_pointer_v<T> || std::is_reference_v<T> ||
                         is_denied<std::remove_cv_t<T>>::value> {};
}  // namespace concur::detail

namespace concur {
// Instantiated (only) to report a type that cannot be encoded or decoded; T is the
// innermost offender (the member type, not the container holding it).
template <class T>
struct concur_type_is_not_serializable {
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                    !std::is_null_pointer_v<T>,
                "concur: a pointer cannot cross a process boundary (its address means nothing "
                "in the other process); send the value it points to");
  static_assert(!std::is_reference_v<T>,
                "concur: a reference cannot cross a process boundary; name the value type");
  static_assert(!detail::is_denied<std::remove_cv_t<T>>::value,
                "concur: this standard type cannot cross a process boundary (smart pointers, "
                "std::function, std::atomic and std::reference_wrapper hold addresses or "
                "process-local state); send the plain value instead");
  static_assert(detail::has_specific_reason<T>::value,
                "concur: this type cannot cross a process boundary; give it a cereal "
                "serialize() function or make it trivially copyable");
};

template <class T>
struct concur_cannot_decode_a_view {
  static_assert(detail::dependent_false<T>::value,
                "concur: a view (std::string_view, std::span, C string) can be encoded but not "
                "decoded, because it would point into the message buffer; decode std::string "
                "or std::vector instead");
};
}  // namespace concur

// ------------------------------------------------------------------ entry points

namespace concur::detail {

template <class T>
void encode(Writer& w, const T& value) {
  using C = codec<T>;
  if constexpr (C::enc) {
    C::encode(w, value);
  } else {
    static_cast<void>(sizeof(concur_type_is_not_serializable<typename C::enc_culprit>));
  }
}

template <class T>
decoded_t<T> decode(Reader& r) {
  using C = codec<T>;
  if constexpr (C::dec) {
    try {
      return C::decode(r);
    } catch (const SerializationError& e) {
      throw_in_context(e, type_name<decoded_t<T>>);
    }
  } else {
    using culprit = typename C::dec_culprit;
    if constexpr (is_view_source<culprit>::value) {
      static_cast<void>(sizeof(concur_cannot_decode_a_view<culprit>));
    } else {
      static_cast<void>(sizeof(concur_type_is_not_serializable<culprit>));
    }
    throw SerializationError("concur: unreachable");
  }
}

template <class T>
std::vector<std::byte> dumps(const T& value) {
  Writer w;
  encode(w, value);
  const auto b = w.bytes();
  return std::vector<std::byte>(b.begin(), b.end());
}

template <class T>
decoded_t<T> loads(std::span<const std::byte> bytes) {
  Reader r(bytes);
  if constexpr (codec<T>::dec) {
    decoded_t<T> v = decode<T>(r);
    if (r.remaining() != 0) throw_trailing(r.remaining(), type_name<decoded_t<T>>);
    return v;
  } else {
    return decode<T>(r);  // reports the type
  }
}

}  // namespace concur::detail

CEREAL_REGISTER_ARCHIVE(concur::detail::CerealOut)
CEREAL_REGISTER_ARCHIVE(concur::detail::CerealIn)
CEREAL_SETUP_ARCHIVE_TRAITS(concur::detail::CerealIn, concur::detail::CerealOut)
