// concur/detail/serialize_core.hpp: the byte buffers of the serialization layer.
//
// Writer and Reader know nothing about types; the codecs (serialize_codec.hpp) drive them.
// This header is deliberately free of cereal and of the standard containers so that
// transport code (pipes, rings, shared memory) can include it alone.
//
// Wire format primitives, all in host byte order (both ends run the same binary on the
// same kind of machine; this is not a storage format):
//   length   u64
//   block    the bytes themselves, or, when the block is >= kOobThreshold bytes, a u64
//            marker (0 = the bytes follow inline, 1 = out of band) and for out of band the
//            u64 id returned by OobSink::put. The reader always knows the block's length
//            before it reaches it, so small blocks pay nothing for the possibility; the
//            marker is 8 bytes wide to keep a large payload as aligned as its length was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "concur/errors.hpp"

static_assert(sizeof(std::size_t) == 8, "concur's serialization assumes a 64-bit size_t");

namespace concur::detail {

// Where a Writer puts large blocks instead of copying them into its buffer (the process
// pool supplies one backed by shared memory). put() may keep the pointer or copy the
// bytes, but must not let the id it returns name anything else until the matching
// OobSource has served it.
struct OobSink {
  virtual ~OobSink() = default;
  virtual std::uint64_t put(const void* data, std::size_t n) = 0;
};

// The reading side of an OobSink. get() returns the n bytes stored under id; it may throw
// SerializationError for an unknown id, and any span whose size is not n is rejected.
struct OobSource {
  virtual ~OobSource() = default;
  virtual std::span<const std::byte> get(std::uint64_t id, std::size_t n) = 0;
};

// Contiguous blocks at least this large go out of band when the Writer has a sink.
inline constexpr std::size_t kOobThreshold = std::size_t{1} << 20;

// Elements that occupy no bytes in a message (std::monostate, an empty cereal struct)
// would let a few bytes claim billions of elements. Each message may hold at most this
// many bytes' worth of them, each counted as max(sizeof, 64) so that the decoding loop is
// bounded too (262144 elements). Enforced on both sides, so that whatever encodes also
// decodes.
inline constexpr std::size_t kEmptyElementBudget = std::size_t{1} << 24;
inline constexpr std::size_t kEmptyElementMinCharge = 64;

// Nesting limit for values that can contain themselves (user types with cereal
// functions): deep enough for real trees, shallow enough that hostile input cannot
// exhaust the stack. Enforced when encoding too, for the same reason as above.
inline constexpr std::size_t kMaxDepth = 1000;

class CerealOut;
class CerealIn;

// memcpy for message blocks. glibc copies blocks from about 2 KiB to about 1 MiB with
// `rep movsb`, which on AMD Zen runs some 15 times slower when the destination lies 1 to
// 63 bytes past the source modulo 4 KiB (every load waits on a store it only seems to
// alias). Heap layouts repeat, so a message size that hits this would hit it on every
// message; such copies go in 2 KiB pieces, which glibc does with vector loads that do not
// stall. Larger copies take another path in glibc and are left alone.
void copy_in_pieces(void* dst, const void* src, std::size_t n) noexcept;
inline bool copy_would_stall(const void* dst, const void* src, std::size_t n) noexcept {
  const auto distance = (reinterpret_cast<std::uintptr_t>(dst) -
                         reinterpret_cast<std::uintptr_t>(src)) % 4096;
  return n >= 2048 && n < (std::size_t{1} << 20) && distance != 0 && distance < 64;
}
// Asks the kernel to back a fresh buffer of at least kHugeBufferBytes with 2 MiB pages
// (transparent huge pages in "madvise" mode, Debian's default): filling a new 64 MiB
// vector then takes 32 page faults instead of 16 384, about 4x faster on these machines.
inline constexpr std::size_t kHugeBufferBytes = std::size_t{8} << 20;
void advise_huge_pages(void* p, std::size_t n) noexcept;

inline void copy_bytes(void* dst, const void* src, std::size_t n) noexcept {
  if (copy_would_stall(dst, src, n)) [[unlikely]] {
    copy_in_pieces(dst, src, n);
  } else if (n != 0) {
    std::memcpy(dst, src, n);
  }
}

// "std::vector<int>" for messages, taken from the compiler's own spelling of T.
template <class T>
constexpr const char* pretty_function() noexcept {
  return __PRETTY_FUNCTION__;
}
template <class T>
constexpr std::string_view type_name_of() noexcept {
  std::string_view p = pretty_function<T>();
  const std::size_t b = p.find("T = ") + 4;
  return p.substr(b, p.rfind(']') - b);
}
template <class T>
inline constexpr std::string_view type_name = type_name_of<T>();

// Cold paths, out of line (src/serialize.cpp). `type` is the value being decoded or
// encoded; the messages read "concur: <what> while decoding <type>".
[[noreturn, gnu::cold]] void throw_truncated(std::size_t needed, std::size_t left,
                                             std::string_view type);
[[noreturn, gnu::cold]] void throw_corrupt(std::string_view what, std::string_view type);
[[noreturn, gnu::cold]] void throw_unencodable(std::string_view what, std::string_view type);
[[noreturn, gnu::cold]] void throw_too_long(std::uint64_t count, std::size_t left,
                                            std::size_t min_each, std::string_view type);

class Writer {
 public:
  Writer() noexcept = default;
  ~Writer();
  Writer(Writer&& other) noexcept;
  Writer& operator=(Writer&& other) noexcept;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void write_bytes(const void* data, std::size_t n) {
    if (n != 0) copy_bytes(grow(n), data, n);
  }

  // Room for n more bytes, uninitialised; the caller fills all of them.
  std::byte* grow(std::size_t n) {
    if (n > cap_ - size_) [[unlikely]] reserve_for(n);
    std::byte* p = buf_ + size_;
    size_ += n;
    return p;
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return cap_; }
  std::span<const std::byte> bytes() const noexcept { return {buf_, size_}; }
  void clear() noexcept {
    size_ = 0;
    empty_budget_ = kEmptyElementBudget;
  }
  // Drops everything after the first n bytes: how a caller takes back a value whose
  // encoding threw halfway (blocks already handed to the OobSink stay with it).
  void truncate(std::size_t n) noexcept {
    if (n < size_) size_ = n;
  }
  void set_oob_sink(OobSink* sink) noexcept { sink_ = sink; }
  OobSink* oob_sink() const noexcept { return sink_; }

  // A block whose length the reader will know before reaching it (see the format above).
  void write_block(const void* data, std::size_t n) {
    if (n < kOobThreshold) [[likely]] {
      write_bytes(data, n);
    } else {
      write_large_block(data, n);
    }
  }

  // Machinery for the codecs.
  void charge_empty(std::size_t count, std::size_t each, std::string_view type) {
    if (each < kEmptyElementMinCharge) each = kEmptyElementMinCharge;
    if (count > empty_budget_ / each) [[unlikely]] throw_empty_budget(type);
    empty_budget_ -= count * each;
  }
  CerealOut* archive() const noexcept { return archive_; }
  void set_archive(CerealOut* a) noexcept { archive_ = a; }

 private:
  void reserve_for(std::size_t n);
  void write_large_block(const void* data, std::size_t n);
  [[noreturn, gnu::cold]] static void throw_empty_budget(std::string_view type);

  std::byte* buf_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
  OobSink* sink_ = nullptr;
  CerealOut* archive_ = nullptr;
  std::size_t empty_budget_ = kEmptyElementBudget;
};

// A Reader that has thrown is spent: it makes no promise about its position afterwards.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes, OobSource* oob = nullptr) noexcept
      : cur_(bytes.data()), end_(bytes.data() + bytes.size()), oob_(oob) {}

  void read_bytes(void* out, std::size_t n) {
    const std::byte* p = take(n);
    copy_bytes(out, p, n);
  }
  const std::byte* take(std::size_t n) { return take(n, {}); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - cur_); }

  // take() whose error names the value being decoded.
  const std::byte* take(std::size_t n, std::string_view type) {
    if (n > remaining()) [[unlikely]] throw_truncated(n, remaining(), type);
    const std::byte* p = cur_;
    cur_ += n;
    return p;
  }
  // The counterpart of Writer::write_block: inline bytes, or the OobSource's.
  std::span<const std::byte> read_block(std::size_t n, std::string_view type) {
    if (n < kOobThreshold) [[likely]] return {take(n, type), n};
    return read_large_block(n, type);
  }
  OobSource* oob_source() const noexcept { return oob_; }

  // Machinery for the codecs.
  void charge_empty(std::size_t count, std::size_t each, std::string_view type) {
    if (each < kEmptyElementMinCharge) each = kEmptyElementMinCharge;
    if (count > empty_budget_ / each) [[unlikely]] throw_empty_budget(type);
    empty_budget_ -= count * each;
  }
  CerealIn* archive() const noexcept { return archive_; }
  void set_archive(CerealIn* a) noexcept { archive_ = a; }

 private:
  std::span<const std::byte> read_large_block(std::size_t n, std::string_view type);
  [[noreturn, gnu::cold]] static void throw_empty_budget(std::string_view type);

  const std::byte* cur_;
  const std::byte* end_;
  OobSource* oob_;
  CerealIn* archive_ = nullptr;
  std::size_t empty_budget_ = kEmptyElementBudget;
};

}  // namespace concur::detail
