// Fuzz target of the serialization layer (concur/serialize.hpp): the decoders read bytes
// from other processes.
//
// Input: [case][message...]. The first byte picks the decoded type (serialize_types.hpp),
// the rest is decoded with a Reader whose OobSource (FakeOob) serves out-of-band blocks
// made from the message, or fails in the ways a real source may: unknown id, wrong size.
//
// Properties:
// * decoding succeeds or throws concur::SerializationError; any other exception, a crash,
//   UB or a leak (the sanitizers) is a bug, and so is a single allocation far larger than
//   the input (plus the out-of-band bytes served) justifies;
// * a decoded value re-encodes, and that decodes to the same value with nothing left over,
//   both inline and through an OobSink / OobSource pair.
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "serialize_types.hpp"

namespace {

using concur::SerializationError;
using concur::detail::decode;
using concur::detail::encode;
using concur::detail::kOobThreshold;
using concur::detail::OobSink;
using concur::detail::OobSource;
using concur::detail::Reader;
using concur::detail::Writer;

// The largest block FakeOob serves: a real source maps a segment of bounded size too.
constexpr std::size_t kMaxOobBlock = 4 * kOobThreshold;

// Serves out-of-band blocks whose bytes repeat the message; the id chooses the behaviour.
class FakeOob final : public OobSource {
 public:
  explicit FakeOob(std::span<const std::byte> pattern) : pattern_(pattern) {}

  std::span<const std::byte> get(std::uint64_t id, std::size_t n) override {
    concur_fuzz::AllocProbe::Pause pause;  // our buffers are not the decoder's doing
    if (n > kMaxOobBlock) throw SerializationError("fake oob: block too large");
    switch (id % 5) {
      case 0: return fill(id, n);
      case 1: return fill(id, n + 1);  // wrong size: the Reader must reject it
      case 2: throw SerializationError("fake oob: unknown id " + std::to_string(id));
      case 3: return {};               // wrong size (empty)
      default: return fill(id, n);     // served twice is fine: the same bytes again
    }
  }
  std::size_t largest_served() const noexcept { return largest_; }

 private:
  std::span<const std::byte> fill(std::uint64_t id, std::size_t n) {
    auto& b = blocks_[id];
    if (b.size() != n) {
      b.resize(n);
      for (std::size_t i = 0; i < n; ++i)
        b[i] = pattern_.empty() ? std::byte{0}
                                : pattern_[(i + static_cast<std::size_t>(id / 5)) % pattern_.size()];
    }
    if (n > largest_) largest_ = n;
    return b;
  }

  std::span<const std::byte> pattern_;
  std::map<std::uint64_t, std::vector<std::byte>> blocks_;
  std::size_t largest_ = 0;
};

// A sink and source pair that copies, as a shared-memory transport would.
class CopyingOob final : public OobSink, public OobSource {
 public:
  std::uint64_t put(const void* data, std::size_t n) override {
    const auto* p = static_cast<const std::byte*>(data);
    blocks_.emplace_back(p, p + n);
    return blocks_.size() - 1;
  }
  std::span<const std::byte> get(std::uint64_t id, std::size_t) override {
    if (id >= blocks_.size()) concur_fuzz::broken("CopyingOob: the decoder asked for an id never put");
    return blocks_[id];
  }
  std::size_t count() const noexcept { return blocks_.size(); }

 private:
  std::vector<std::vector<std::byte>> blocks_;
};

bool same_bytes(const Writer& a, const Writer& b) {
  const auto x = a.bytes(), y = b.bytes();
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0);
}

template <class Case>
void run(std::span<const std::byte> msg) {
  using T = typename Case::type;
  using D = concur::detail::decoded_t<T>;
  const char* name = concur::detail::type_name<T>.data();

  FakeOob oob(msg);
  std::optional<D> value;
  concur_fuzz::AllocProbe::arm();
  try {
    Reader r(msg, &oob);
    value.emplace(decode<T>(r));
  } catch (const SerializationError&) {
    // The documented failure.
  } catch (const std::exception& e) {
    concur_fuzz::AllocProbe::disarm();
    concur_fuzz::broken("decode threw something other than SerializationError:", e.what());
  } catch (...) {
    concur_fuzz::AllocProbe::disarm();
    concur_fuzz::broken("decode threw a non-std exception for", name);
  }
  const std::size_t largest = concur_fuzz::AllocProbe::disarm();
  // Lengths are checked against the bytes left before anything is reserved: allow a
  // generous constant factor, the fixed budget of empty elements (kEmptyElementBudget /
  // 64 elements of a few bytes each) and the blocks the OobSource handed over.
  const std::size_t limit = 64 * msg.size() + (std::size_t{1} << 20) + 2 * oob.largest_served();
  if (largest > limit) {
    std::fprintf(stderr, "largest allocation %zu bytes, limit %zu, input %zu bytes\n", largest,
                 limit, msg.size());
    concur_fuzz::broken("allocation out of proportion to the input while decoding", name);
  }
  if (!value) return;

  // Round trip, inline.
  Writer w1;
  encode(w1, *value);
  std::optional<D> again;
  try {
    Reader r(w1.bytes());
    again.emplace(decode<T>(r));
    if (r.remaining() != 0) concur_fuzz::broken("re-encoded value left trailing bytes:", name);
  } catch (const std::exception& e) {
    concur_fuzz::broken("a re-encoded value does not decode:", e.what());
  }
  Writer w2;
  encode(w2, *again);
  if constexpr (Case::compare == concur_fuzz::Compare::value) {
    if (!(*again == *value)) concur_fuzz::broken("round trip changed the value of", name);
  } else {
    if (!same_bytes(w1, w2)) concur_fuzz::broken("round trip changed the encoding of", name);
  }

  // Round trip through an OobSink and its source: large blocks leave the message.
  CopyingOob sink;
  Writer w3;
  w3.set_oob_sink(&sink);
  encode(w3, *value);
  try {
    Reader r(w3.bytes(), &sink);
    D third = decode<T>(r);
    if (r.remaining() != 0) concur_fuzz::broken("out-of-band encoding left trailing bytes:", name);
    Writer w4;
    encode(w4, third);
    if constexpr (Case::compare == concur_fuzz::Compare::value) {
      if (!(third == *value)) concur_fuzz::broken("out-of-band round trip changed", name);
    } else {
      if (!same_bytes(w1, w4)) concur_fuzz::broken("out-of-band round trip changed", name);
    }
  } catch (const std::exception& e) {
    concur_fuzz::broken("an out-of-band encoding does not decode:", e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  concur_fuzz::AllocProbe::install();
  if (size == 0) return 0;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  const std::span<const std::byte> msg(bytes + 1, size - 1);
  concur_fuzz::visit_case(data[0], [&]<class Case>() { run<Case>(msg); });
  return 0;
}
