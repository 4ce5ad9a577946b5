// The cold and the large: buffer growth, out-of-band blocks and error messages of the
// serialization layer, kept out of the headers that the hot paths include.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#include "concur/detail/serialize_codec.hpp"

namespace concur::detail {
namespace {

// The compilers' spellings of library types, made readable for messages.
std::string readable(std::string_view type) {
  std::string s(type);
  static constexpr std::pair<std::string_view, std::string_view> kReplace[] = {
      {"std::__cxx11::basic_string<char>", "std::string"},
      {"std::basic_string<char>", "std::string"},
      {"std::basic_string_view<char>", "std::string_view"},
      {"std::__cxx11::", "std::"},
      {"std::__1::", "std::"},
  };
  for (const auto& [from, to] : kReplace) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
      s.replace(at, from.size(), to);
  }
  return s;
}

std::string while_decoding(std::string_view type) {
  if (type.empty()) return {};
  return " while decoding " + readable(type);
}

}  // namespace

void advise_huge_pages(void* p, std::size_t n) noexcept {
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) & ~(kHuge - 1);
  // Advice only: where THP is off or the range is not eligible, nothing changes.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

void copy_in_pieces(void* dst, const void* src, std::size_t n) noexcept {
  std::size_t piece = 2048;  // at or below glibc's smallest rep movsb threshold
  // Hidden from the optimiser: with a known size g++ inlines memcpy as `rep movsq`, which
  // stalls the same way.
  __asm__("" : "+r"(piece));
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
  for (; n > piece; n -= piece, d += piece, s += piece) std::memcpy(d, s, piece);
  std::memcpy(d, s, n);
}

// ------------------------------------------------------------------ Writer

Writer::~Writer() { std::free(buf_); }

Writer::Writer(Writer&& other) noexcept
    : buf_(other.buf_),
      size_(other.size_),
      cap_(other.cap_),
      sink_(other.sink_),
      archive_(nullptr),
      empty_budget_(other.empty_budget_) {
  other.buf_ = nullptr;
  other.size_ = other.cap_ = 0;
}

Writer& Writer::operator=(Writer&& other) noexcept {
  if (this != &other) {
    std::free(buf_);
    buf_ = other.buf_;
    size_ = other.size_;
    cap_ = other.cap_;
    sink_ = other.sink_;
    archive_ = nullptr;
    empty_budget_ = other.empty_budget_;
    other.buf_ = nullptr;
    other.size_ = other.cap_ = 0;
  }
  return *this;
}

void Writer::reserve_for(std::size_t n) {
  if (n > npos - size_) throw_unencodable("a message larger than the address space", {});
  const std::size_t needed = size_ + n;
  std::size_t cap = cap_ < 256 ? 256 : cap_;
  while (cap < needed) cap = cap > npos / 2 ? needed : cap * 2;
  // realloc, not new + copy: large buffers grow in place or by remapping pages.
  void* p = std::realloc(buf_, cap);
  if (p == nullptr) throw std::bad_alloc();
  buf_ = static_cast<std::byte*>(p);
  cap_ = cap;
}

void Writer::write_large_block(const void* data, std::size_t n) {
  if (sink_ != nullptr) {
    const std::uint64_t id = sink_->put(data, n);
    std::byte* p = grow(16);
    put_u64(p, 1);
    put_u64(p + 8, id);
  } else {
    put_u64(grow(8), 0);
    write_bytes(data, n);
  }
}

void Writer::throw_empty_budget(std::string_view type) {
  throw SerializationError("concur: cannot encode " + readable(type) +
                           ": more than " + std::to_string(kEmptyElementBudget) +
                           " bytes of elements that encode to nothing (the decoder's limit)");
}

// ------------------------------------------------------------------ Reader

std::span<const std::byte> Reader::read_large_block(std::size_t n, std::string_view type) {
  const std::uint64_t marker = get_u64(take(8, type));
  if (marker == 0) return {take(n, type), n};
  if (marker != 1) throw_corrupt("invalid block marker " + std::to_string(marker), type);
  const std::uint64_t id = get_u64(take(8, type));
  if (oob_ == nullptr)
    throw_corrupt("an out-of-band block (id " + std::to_string(id) +
                      ") but the Reader has no OobSource",
                  type);
  const std::span<const std::byte> s = oob_->get(id, n);
  if (s.size() != n)
    throw_corrupt("out-of-band block " + std::to_string(id) + " has " +
                      std::to_string(s.size()) + " bytes, expected " + std::to_string(n),
                  type);
  return s;
}

void Reader::throw_empty_budget(std::string_view type) {
  throw SerializationError("concur: corrupt message: more than " +
                           std::to_string(kEmptyElementBudget) +
                           " bytes of elements that occupy no bytes" + while_decoding(type));
}

// ------------------------------------------------------------------ errors

void throw_truncated(std::size_t needed, std::size_t left, std::string_view type) {
  throw SerializationError("concur: truncated message: needed " + std::to_string(needed) +
                           " bytes, " + std::to_string(left) + " left" + while_decoding(type));
}

void throw_corrupt(std::string_view what, std::string_view type) {
  throw SerializationError("concur: corrupt message: " + std::string(what) + while_decoding(type));
}

void throw_unencodable(std::string_view what, std::string_view type) {
  std::string msg = "concur: cannot encode " + std::string(what);
  if (!type.empty()) msg += " (" + readable(type) + ")";
  throw SerializationError(msg);
}

void throw_too_long(std::uint64_t count, std::size_t left, std::size_t min_each,
                    std::string_view type) {
  throw SerializationError("concur: corrupt message: length " + std::to_string(count) +
                           " cannot fit in the " + std::to_string(left) + " bytes left (" +
                           std::to_string(min_each) + " or more per element)" +
                           while_decoding(type));
}

void throw_bad_flag(unsigned value, std::string_view type) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", value);
  throw SerializationError("concur: corrupt message: byte " + std::string(hex) +
                           " where a bool (0 or 1) was expected" + while_decoding(type));
}

void throw_bad_index(std::uint64_t index, std::size_t count, std::string_view type) {
  throw SerializationError("concur: corrupt message: variant index " + std::to_string(index) +
                           " out of range (" + std::to_string(count) + " alternatives)" +
                           while_decoding(type));
}

void throw_too_deep(std::string_view type, bool decoding) {
  const std::string where = decoding ? while_decoding(type) : " while encoding " + readable(type);
  throw SerializationError(std::string("concur: ") +
                           (decoding ? "corrupt message: " : "cannot encode: ") +
                           "nesting deeper than " + std::to_string(kMaxDepth) + " levels" + where);
}

void throw_cereal(const char* what, std::string_view type, bool decoding) {
  throw SerializationError(std::string("concur: ") + (decoding ? "corrupt message: " : "") +
                           "cereal: " + what +
                           (decoding ? while_decoding(type) : " while encoding " + readable(type)));
}

void throw_in_context(const SerializationError& e, std::string_view type) {
  const std::string outer = readable(type);
  const std::string_view msg = e.what();
  if (msg.ends_with(outer)) throw e;
  throw SerializationError(std::string(msg) + " (in " + outer + ")");
}

void throw_trailing(std::size_t left, std::string_view type) {
  throw SerializationError("concur: " + std::to_string(left) + " trailing bytes after decoding " +
                           readable(type));
}

}  // namespace concur::detail
