// The wire format of Python's logging.handlers.SocketHandler: a 4-byte big-endian length,
// then the LogRecord's __dict__ pickled (protocol 1, as SocketHandler.makePickle does).
// The C++ log client uses this small pickler to speak it; the server reads it with
// concur::pickle.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace logwire {

inline constexpr std::uint16_t kDefaultPort = 18842;
inline constexpr std::uint32_t kDefaultMaxFrame = 16u << 20;

// A field value of a log record.
using Field = std::variant<std::nullptr_t, std::int64_t, double, std::string>;

// Appends a protocol-1 pickle of {key: value, ...} (in order) to `out`.
inline void pickle_dict(std::string& out, const std::vector<std::pair<std::string, Field>>& fields) {
  auto u32 = [&out](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  auto str = [&](std::string_view s) {
    out.push_back('X');
    u32(static_cast<std::uint32_t>(s.size()));
    out.append(s);
  };
  out += "}(";  // EMPTY_DICT, MARK
  for (const auto& [k, v] : fields) {
    str(k);
    if (std::holds_alternative<std::nullptr_t>(v)) {
      out.push_back('N');
    } else if (auto* i = std::get_if<std::int64_t>(&v)) {
      if (*i >= INT32_MIN && *i <= INT32_MAX) {
        out.push_back('J');
        u32(static_cast<std::uint32_t>(static_cast<std::int32_t>(*i)));
      } else {
        // Appended piecewise: g++ 12 -O3 warns (-Wrestrict, a false positive) on
        // "L" + std::to_string(...).
        out.push_back('L');
        out += std::to_string(*i);
        out += "L\n";
      }
    } else if (auto* d = std::get_if<double>(&v)) {
      std::uint64_t bits;
      std::memcpy(&bits, d, sizeof bits);
      out.push_back('G');
      for (int b = 7; b >= 0; --b) out.push_back(static_cast<char>((bits >> (8 * b)) & 0xFF));
    } else {
      str(std::get<std::string>(v));
    }
  }
  out += "u.";  // SETITEMS, STOP
}

// Appends one framed record: 4-byte big-endian length + pickle.
inline void frame_record(std::string& out, const std::vector<std::pair<std::string, Field>>& fields) {
  std::size_t at = out.size();
  out.append(4, '\0');
  pickle_dict(out, fields);
  auto n = static_cast<std::uint32_t>(out.size() - at - 4);
  for (int i = 0; i < 4; ++i) out[at + static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * (3 - i))) & 0xFF);
}

// Seconds since the epoch, as LogRecord.created.
inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace logwire
