// The pickle reader: decodes into a reusable node arena (strings stay views into the
// input where possible), from which either a Value tree or JSON text is produced. The
// memo holds node ids, so shared references keep Python's identity semantics while the
// arena is built; cycles and runaway sharing are caught when walking it.
#include "concur/pickle.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>

namespace concur::pickle {
namespace {

[[noreturn]] void fail(const std::string& why) { throw PickleError("pickle: " + why); }

// Python refuses to print ints of more than 4300 digits; so do we (and it bounds the
// quadratic base conversion).
constexpr std::size_t kMaxIntDigits = 4300;
constexpr std::size_t kMaxLongBytes = 1786;  // 256^1786 < 10^4301

enum class K : std::uint8_t {
  none, boolean, integer, big, floating, str, bytes, tuple, list, dict,
  codecs_encode, builtin_bytes  // the only globals we accept, for bytes at protocols 0-2
};

struct Node {
  K kind = K::none;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  // str (UTF-8), bytes, big int digits: a view of the input, or `own` when decoded.
  // (Not a view of `own`: nodes move when the arena grows, and short strings move with
  // them.)
  std::string_view view;
  std::string own;
  bool owned = false;
  // tuple: every item hashable, fixed when the tuple is made (tuples never change), so
  // that checking a dict key costs O(1) however much its tuples share.
  bool hashable = true;
  std::string_view text() const noexcept { return owned ? std::string_view(own) : view; }
  std::vector<std::uint32_t> kids;  // tuple/list items; dict: key, value, key, value...
};

constexpr std::uint32_t kNoNode = std::numeric_limits<std::uint32_t>::max();

const char* opcode_name(unsigned char op) {
  switch (op) {
    case 'c': return "GLOBAL";
    case 0x93: return "STACK_GLOBAL";
    case 'R': return "REDUCE";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 'b': return "BUILD";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    default: return nullptr;
  }
}

std::string hex_byte(unsigned char c) {
  static const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[c >> 4] + digits[c & 15];
}

// ---------------------------------------------------------------- integers as text
// Normalises optional sign + decimal digits; sets `small` when it fits int64.
bool parse_decimal(std::string_view s, std::string& digits_out, std::int64_t& small) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) fail("malformed integer");
  for (char c : s)
    if (c < '0' || c > '9') fail("malformed integer");
  while (s.size() > 1 && s[0] == '0') s.remove_prefix(1);
  if (s.size() > kMaxIntDigits) fail("integer has more than 4300 digits");
  if (s == "0") neg = false;
  digits_out.clear();  // (not assign("-" or ""): g++ 12 -O3 then warns -Wrestrict wrongly)
  if (neg) digits_out.push_back('-');
  digits_out.append(s.data(), s.size());
  auto r = std::from_chars(digits_out.data(), digits_out.data() + digits_out.size(), small);
  return r.ec == std::errc() && r.ptr == digits_out.data() + digits_out.size();
}

// Little-endian two's complement bytes -> decimal text.
std::string long_bytes_to_decimal(std::string_view le) {
  std::vector<unsigned char> mag(le.rbegin(), le.rend());  // big-endian
  bool neg = !mag.empty() && (mag[0] & 0x80);
  if (neg) {  // magnitude = ~x + 1
    for (auto& b : mag) b = static_cast<unsigned char>(~b);
    for (std::size_t k = mag.size(); k-- > 0;)
      if (++mag[k] != 0) break;
  }
  std::string rev;
  std::size_t start = 0;
  while (start < mag.size() && mag[start] == 0) ++start;
  while (start < mag.size()) {
    std::uint64_t rem = 0;
    for (std::size_t k = start; k < mag.size(); ++k) {
      std::uint64_t cur = (rem << 8) | mag[k];
      mag[k] = static_cast<unsigned char>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    while (start < mag.size() && mag[start] == 0) ++start;
    for (int d = 0; d < 9; ++d) {
      rev.push_back(static_cast<char>('0' + rem % 10));
      rem /= 10;
      if (start == mag.size() && rem == 0) break;
    }
  }
  while (rev.size() > 1 && rev.back() == '0') rev.pop_back();
  if (rev.empty()) rev = "0";
  if (neg) rev.push_back('-');
  return std::string(rev.rbegin(), rev.rend());
}

// ---------------------------------------------------------------- UTF-8 helpers
void put_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes one code point at s[i] (UTF-8 with surrogatepass); advances i. Returns false
// on invalid input.
bool next_code_point(std::string_view s, std::size_t& i, std::uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    cp = c;
    ++i;
    return true;
  }
  std::size_t n;
  std::uint32_t min;
  if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
  else return false;
  if (i + n >= s.size()) return false;
  for (std::size_t k = 1; k <= n; ++k) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF) return false;
  i += n + 1;
  return true;
}

void validate_utf8(std::string_view s) {
  std::size_t i = 0;
  std::uint32_t cp;
  while (i < s.size()) {
    // Skip ASCII runs quickly.
    while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
    if (i == s.size()) break;
    if (!next_code_point(s, i, cp)) fail("str is not valid UTF-8");
  }
}

// raw-unicode-escape (protocol 0 UNICODE): latin-1 with \uXXXX and \UXXXXXXXX.
std::string decode_raw_unicode_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
      std::size_t len = s[i + 1] == 'u' ? 4 : 8;
      if (i + 2 + len > s.size()) fail("truncated \\u escape in UNICODE");
      std::uint32_t cp = 0;
      auto r = std::from_chars(s.data() + i + 2, s.data() + i + 2 + len, cp, 16);
      if (r.ec != std::errc() || r.ptr != s.data() + i + 2 + len || cp > 0x10FFFF)
        fail("bad \\u escape in UNICODE");
      put_utf8(out, cp);
      i += 2 + len;
    } else {
      put_utf8(out, c);
      ++i;
    }
  }
  return out;
}

// Python 2 string literal body (STRING opcode), decoded as ASCII like Python 3 does.
std::string decode_escaped_ascii(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i == s.size()) fail("trailing backslash in STRING");
    char e = s[i];
    switch (e) {
      case '\n': break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x': {
        if (i + 2 >= s.size()) fail("truncated \\x escape in STRING");
        unsigned v = 0;
        auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
        if (r.ec != std::errc() || r.ptr != s.data() + i + 3) fail("bad \\x escape in STRING");
        out.push_back(static_cast<char>(v));
        i += 2;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          unsigned v = 0;
          std::size_t k = 0;
          while (k < 3 && i + k < s.size() && s[i + k] >= '0' && s[i + k] <= '7') v = v * 8 + unsigned(s[i + k++] - '0');
          out.push_back(static_cast<char>(v & 0xFF));
          i += k - 1;
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  for (unsigned char c : out)
    if (c >= 0x80) fail("STRING is not ASCII");
  return out;
}

// ---------------------------------------------------------------- decoder
class Decoder {
 public:
  std::uint32_t decode(std::string_view data, const LoadOptions& opt);
  const Node& node(std::uint32_t id) const { return nodes_[id]; }
  std::size_t node_count() const noexcept { return used_; }
  // Per-node "on the current path" flags for the walkers, reused across decodes.
  std::vector<unsigned char>& path_flags() const {
    path_.assign(used_, 0);
    return path_;
  }

 private:
  std::uint32_t add(K kind) {
    if (used_ == nodes_.size()) nodes_.emplace_back();
    Node& n = nodes_[used_];
    n.kind = kind;
    n.view = {};
    n.owned = false;
    n.hashable = true;
    n.own.clear();
    n.kids.clear();
    return static_cast<std::uint32_t>(used_++);
  }
  void push(std::uint32_t id) { stack_.push_back(id); }
  std::uint32_t pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    auto id = stack_.back();
    stack_.pop_back();
    return id;
  }
  std::uint32_t top() const {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::size_t pop_mark() {
    if (marks_.empty()) fail("MARK expected");
    auto m = marks_.back();
    marks_.pop_back();
    return m;
  }

  void need(std::size_t n) const {
    if (static_cast<std::size_t>(end_ - p_) < n) fail("truncated data");
  }
  unsigned char byte() {
    need(1);
    return static_cast<unsigned char>(*p_++);
  }
  std::uint64_t uint_le(std::size_t n) {
    need(n);
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < n; ++k) v |= std::uint64_t(static_cast<unsigned char>(p_[k])) << (8 * k);
    p_ += n;
    return v;
  }
  std::string_view take(std::uint64_t n) {
    if (n > static_cast<std::uint64_t>(end_ - p_)) fail("length " + std::to_string(n) + " runs past the end of the data");
    std::string_view v(p_, static_cast<std::size_t>(n));
    p_ += n;
    return v;
  }
  std::string_view line() {
    const char* nl = static_cast<const char*>(std::memchr(p_, '\n', static_cast<std::size_t>(end_ - p_)));
    if (!nl) fail("truncated data (no end of line)");
    std::string_view v(p_, static_cast<std::size_t>(nl - p_));
    p_ = nl + 1;
    return v;
  }

  // Python's pickler numbers memo entries 0, 1, 2... (one opcode, so at least one byte
  // of input, each): such keys index a vector. Larger keys, which only hand-made data has,
  // go to a map, so that a few bytes cannot size the vector to max_memo_key entries.
  void memo_put(std::uint64_t key, std::uint32_t id) {
    if (key > max_memo_) fail("memo key too large");
    if (key < dense_limit_) {
      if (memo_.size() <= key) memo_.resize(static_cast<std::size_t>(key) + 1, kNoNode);
      std::uint32_t& slot = memo_[static_cast<std::size_t>(key)];
      memo_count_ += slot == kNoNode;
      slot = id;
    } else {
      memo_count_ += sparse_memo_.insert_or_assign(key, id).second;
    }
  }
  std::uint32_t memo_get(std::uint64_t key) const {
    if (key < memo_.size() && memo_[static_cast<std::size_t>(key)] != kNoNode)
      return memo_[static_cast<std::size_t>(key)];
    if (auto it = sparse_memo_.find(key); it != sparse_memo_.end()) return it->second;
    fail("memo key " + std::to_string(key) + " not found");
  }
  static std::uint64_t text_key(std::string_view s) {
    std::uint64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) fail("bad memo key");
    return v;
  }

  void push_str(std::string_view utf8_view) {
    validate_utf8(utf8_view);
    auto id = add(K::str);
    nodes_[id].view = utf8_view;
    push(id);
  }
  void push_owned(K kind, std::string s) {
    auto id = add(kind);
    nodes_[id].own = std::move(s);
    nodes_[id].owned = true;
    push(id);
  }
  void push_bytes(std::string_view raw) {
    auto id = add(K::bytes);
    nodes_[id].view = raw;
    push(id);
  }
  void push_int_text(std::string_view s) {
    std::string digits;
    std::int64_t small = 0;
    if (parse_decimal(s, digits, small)) {
      auto id = add(K::integer);
      nodes_[id].i = small;
      push(id);
    } else {
      push_owned(K::big, std::move(digits));
    }
  }
  void push_long_bytes(std::string_view le) {
    if (le.size() > kMaxLongBytes) fail("integer has more than 4300 digits");
    if (le.size() <= 8) {
      std::uint64_t v = 0;
      for (std::size_t k = 0; k < le.size(); ++k) v |= std::uint64_t(static_cast<unsigned char>(le[k])) << (8 * k);
      if (!le.empty() && le.size() < 8 && (static_cast<unsigned char>(le.back()) & 0x80))
        v |= ~std::uint64_t(0) << (8 * le.size());  // sign-extend
      auto id = add(K::integer);
      nodes_[id].i = static_cast<std::int64_t>(v);
      push(id);
      return;
    }
    std::string digits = long_bytes_to_decimal(le);
    std::int64_t small = 0;
    auto r = std::from_chars(digits.data(), digits.data() + digits.size(), small);
    if (r.ec == std::errc() && r.ptr == digits.data() + digits.size()) {
      auto id = add(K::integer);
      nodes_[id].i = small;
      push(id);
    } else {
      push_owned(K::big, std::move(digits));
    }
  }
  void push_float(double d) {
    auto id = add(K::floating);
    nodes_[id].d = d;
    push(id);
  }
  void push_bool(bool b) {
    auto id = add(K::boolean);
    nodes_[id].b = b;
    push(id);
  }

  bool hashable(std::uint32_t id) const {
    const Node& n = nodes_[id];
    return n.kind != K::list && n.kind != K::dict && n.hashable;
  }
  void set_items(std::uint32_t dict, std::size_t from) {
    Node& d = nodes_[dict];
    if (d.kind != K::dict) fail("SETITEM(S) on a non-dict");
    if ((stack_.size() - from) % 2) fail("odd number of items for SETITEMS");
    for (std::size_t k = from; k < stack_.size(); k += 2)
      if (!hashable(stack_[k])) fail("unhashable dict key");
    nodes_[dict].kids.insert(nodes_[dict].kids.end(), stack_.begin() + static_cast<std::ptrdiff_t>(from),
                             stack_.end());
    stack_.resize(from);
  }
  void append_items(std::uint32_t list, std::size_t from) {
    if (nodes_[list].kind != K::list) fail("APPEND(S) on a non-list");
    nodes_[list].kids.insert(nodes_[list].kids.end(), stack_.begin() + static_cast<std::ptrdiff_t>(from),
                             stack_.end());
    stack_.resize(from);
  }
  void make_container(K kind, std::size_t from) {
    auto id = add(kind);
    nodes_[id].kids.assign(stack_.begin() + static_cast<std::ptrdiff_t>(from), stack_.end());
    stack_.resize(from);
    if (kind == K::tuple)
      nodes_[id].hashable = std::all_of(nodes_[id].kids.begin(), nodes_[id].kids.end(),
                                        [&](std::uint32_t k) { return hashable(k); });
    if (kind == K::dict) {
      if (nodes_[id].kids.size() % 2) fail("odd number of items for DICT");
      for (std::size_t k = 0; k < nodes_[id].kids.size(); k += 2)
        if (!hashable(nodes_[id].kids[k])) fail("unhashable dict key");
    }
    push(id);
  }
  void global(std::string_view module, std::string_view name) {
    if (module == "_codecs" && name == "encode") return push(add(K::codecs_encode));
    if ((module == "__builtin__" || module == "builtins") && name == "bytes")
      return push(add(K::builtin_bytes));
    fail("refusing to load global " + std::string(module) + "." + std::string(name) +
         " (only bytes reconstruction is allowed)");
  }
  void reduce() {
    auto args = pop();
    auto fn = pop();
    const Node& a = nodes_[args];
    if (a.kind != K::tuple) fail("REDUCE arguments are not a tuple");
    if (nodes_[fn].kind == K::builtin_bytes && a.kids.empty()) {
      push_bytes({});
      return;
    }
    if (nodes_[fn].kind == K::codecs_encode && a.kids.size() == 2 &&
        nodes_[a.kids[0]].kind == K::str && nodes_[a.kids[1]].kind == K::str &&
        (nodes_[a.kids[1]].text() == "latin1" || nodes_[a.kids[1]].text() == "latin-1")) {
      std::string_view s = nodes_[a.kids[0]].text();
      std::string raw;
      raw.reserve(s.size());
      std::uint32_t cp;
      for (std::size_t i = 0; i < s.size();) {
        if (!next_code_point(s, i, cp) || cp > 0xFF) fail("_codecs.encode: not latin-1");
        raw.push_back(static_cast<char>(cp));
      }
      push_owned(K::bytes, std::move(raw));
      return;
    }
    fail("refusing REDUCE other than bytes reconstruction");
  }

  std::vector<Node> nodes_;
  std::size_t used_ = 0;
  mutable std::vector<unsigned char> path_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::vector<std::uint32_t> memo_;
  std::unordered_map<std::uint64_t, std::uint32_t> sparse_memo_;
  std::size_t memo_count_ = 0;  // distinct keys: MEMOIZE's key, as len(memo) in Python
  std::uint64_t dense_limit_ = 0;
  const char* p_ = nullptr;
  const char* end_ = nullptr;
  std::uint64_t max_memo_ = 0;
};

std::uint32_t Decoder::decode(std::string_view data, const LoadOptions& opt) {
  used_ = 0;
  stack_.clear();
  marks_.clear();
  memo_.clear();
  sparse_memo_.clear();
  memo_count_ = 0;
  dense_limit_ = data.size();
  p_ = data.data();
  end_ = data.data() + data.size();
  max_memo_ = opt.max_memo_key;
  if (data.empty()) fail("empty data");
  for (;;) {
    unsigned char op = byte();
    switch (op) {
      case 0x80: {  // PROTO
        unsigned v = byte();
        if (v > 5) fail("unsupported protocol " + std::to_string(v));
        break;
      }
      case 0x95:  // FRAME: a length we can ignore, the data follows inline
        if (uint_le(8) > static_cast<std::uint64_t>(end_ - p_)) fail("frame runs past the end of the data");
        break;
      case '.': {  // STOP
        if (stack_.empty()) fail("STOP with an empty stack");
        return stack_.back();
      }
      case '(': marks_.push_back(stack_.size()); break;
      case '0': pop(); break;
      case '1': stack_.resize(pop_mark()); break;
      case '2': push(top()); break;
      // ---- integers
      case 'I': {
        auto s = line();
        if (s == "00") push_bool(false);
        else if (s == "01") push_bool(true);
        else push_int_text(s);
        break;
      }
      case 'L': {
        auto s = line();
        if (!s.empty() && s.back() == 'L') s.remove_suffix(1);
        push_int_text(s);
        break;
      }
      case 'J': {
        auto id = add(K::integer);
        nodes_[id].i = static_cast<std::int32_t>(static_cast<std::uint32_t>(uint_le(4)));
        push(id);
        break;
      }
      case 'K': {
        auto id = add(K::integer);
        nodes_[id].i = byte();
        push(id);
        break;
      }
      case 'M': {
        auto id = add(K::integer);
        nodes_[id].i = static_cast<std::int64_t>(uint_le(2));
        push(id);
        break;
      }
      case 0x8a: push_long_bytes(take(byte())); break;  // LONG1
      case 0x8b: {                                     // LONG4
        auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(uint_le(4)));
        if (n < 0) fail("LONG4 with negative length");
        push_long_bytes(take(static_cast<std::uint64_t>(n)));
        break;
      }
      // ---- floats, None, bools
      case 'F': {
        auto s = line();
        double d = 0;
        auto r = std::from_chars(s.data(), s.data() + s.size(), d);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size()) fail("malformed FLOAT");
        push_float(d);
        break;
      }
      case 'G': {
        need(8);
        std::uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<unsigned char>(p_[k]);
        p_ += 8;
        double d;
        std::memcpy(&d, &bits, sizeof d);
        push_float(d);
        break;
      }
      case 'N': push(add(K::none)); break;
      case 0x88: push_bool(true); break;
      case 0x89: push_bool(false); break;
      // ---- str
      case 'V': push_owned(K::str, decode_raw_unicode_escape(line())); break;
      case 'X': push_str(take(uint_le(4))); break;
      case 0x8c: push_str(take(byte())); break;
      case 0x8d: push_str(take(uint_le(8))); break;
      case 'S': {
        auto s = line();
        while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
        if (s.size() < 2 || s.front() != s.back() || (s.front() != '\'' && s.front() != '"'))
          fail("the STRING opcode argument must be quoted");
        push_owned(K::str, decode_escaped_ascii(s.substr(1, s.size() - 2)));
        break;
      }
      case 'T':
      case 'U': {
        auto raw = take(op == 'T' ? uint_le(4) : byte());
        for (unsigned char c : raw)
          if (c >= 0x80) fail("BINSTRING is not ASCII");
        push_str(raw);
        break;
      }
      // ---- bytes
      case 'B': push_bytes(take(uint_le(4))); break;
      case 'C': push_bytes(take(byte())); break;
      case 0x8e: push_bytes(take(uint_le(8))); break;
      case 0x96: push_bytes(take(uint_le(8))); break;  // BYTEARRAY8: read as bytes
      // ---- tuples
      case ')': push(add(K::tuple)); break;
      case 't': make_container(K::tuple, pop_mark()); break;
      case 0x85:
      case 0x86:
      case 0x87: {
        std::size_t n = op - 0x84u;
        if (stack_.size() < floor() + n) fail("stack underflow");
        make_container(K::tuple, stack_.size() - n);
        break;
      }
      // ---- lists
      case ']': push(add(K::list)); break;
      case 'l': make_container(K::list, pop_mark()); break;
      case 'a': {
        auto v = pop();
        auto list = top();
        stack_.push_back(v);
        append_items(list, stack_.size() - 1);
        break;
      }
      case 'e': {
        auto m = pop_mark();
        if (m == 0 || m - 1 < floor()) fail("APPENDS without a list");
        append_items(stack_[m - 1], m);
        break;
      }
      // ---- dicts
      case '}': push(add(K::dict)); break;
      case 'd': make_container(K::dict, pop_mark()); break;
      case 's': {
        auto v = pop();
        auto k = pop();
        auto d = top();
        stack_.push_back(k);
        stack_.push_back(v);
        set_items(d, stack_.size() - 2);
        break;
      }
      case 'u': {
        auto m = pop_mark();
        if (m == 0 || m - 1 < floor()) fail("SETITEMS without a dict");
        set_items(stack_[m - 1], m);
        break;
      }
      // ---- memo
      case 'p': memo_put(text_key(line()), top()); break;
      case 'q': memo_put(byte(), top()); break;
      case 'r': memo_put(uint_le(4), top()); break;
      case 0x94: memo_put(memo_count_, top()); break;
      case 'g': push(memo_get(text_key(line()))); break;
      case 'h': push(memo_get(byte())); break;
      case 'j': push(memo_get(uint_le(4))); break;
      // ---- the only code-like opcodes we interpret (bytes at protocols 0-2)
      case 'c': {
        auto module = line();
        auto name = line();
        global(module, name);
        break;
      }
      case 0x93: {
        auto name = pop();
        auto module = pop();
        if (nodes_[name].kind != K::str || nodes_[module].kind != K::str) fail("STACK_GLOBAL needs two str");
        global(nodes_[module].text(), nodes_[name].text());
        break;
      }
      case 'R': reduce(); break;
      default: {
        if (const char* name = opcode_name(op))
          fail(std::string("refusing opcode ") + name + " (" + hex_byte(op) + "): not plain data");
        fail("unknown opcode " + hex_byte(op));
      }
    }
  }
}

// ---------------------------------------------------------------- JSON
constexpr char kHex[] = "0123456789abcdef";

void append_u_escape(std::string& out, std::uint32_t u) {
  char buf[6] = {'\\', 'u', kHex[(u >> 12) & 15], kHex[(u >> 8) & 15], kHex[(u >> 4) & 15], kHex[u & 15]};
  out.append(buf, 6);
}

bool needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c >= 0x7f; }

void append_escaped_char(std::string& out, std::uint32_t cp) {
  switch (cp) {
    case '"': out += "\\\""; return;
    case '\\': out += "\\\\"; return;
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    case '\b': out += "\\b"; return;
    case '\f': out += "\\f"; return;
    default: break;
  }
  if (cp >= 0x10000) {
    cp -= 0x10000;
    append_u_escape(out, 0xD800 | (cp >> 10));
    append_u_escape(out, 0xDC00 | (cp & 0x3FF));
  } else {
    append_u_escape(out, cp);
  }
}

// A str (UTF-8, already validated) with json.dumps' ensure_ascii escaping.
void append_json_str(std::string& out, std::string_view s) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size() && !needs_escape(static_cast<unsigned char>(s[run]))) ++run;
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    std::uint32_t cp;
    if (!next_code_point(s, i, cp)) fail("str is not valid UTF-8");
    append_escaped_char(out, cp);
  }
  out.push_back('"');
}

void append_json_latin1(std::string& out, std::string_view raw) {
  out.push_back('"');
  for (unsigned char c : raw) {
    if (needs_escape(c)) append_escaped_char(out, c);
    else out.push_back(static_cast<char>(c));
  }
  out.push_back('"');
}

// float.__repr__: shortest round-trip digits, fixed notation for 1e-4 <= |x| < 1e16.
void append_float_repr(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "NaN";
    return;
  }
  if (std::isinf(d)) {
    out += d > 0 ? "Infinity" : "-Infinity";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  bool neg = false;
  if (sci[0] == '-') {
    neg = true;
    sci.remove_prefix(1);
  }
  auto epos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, epos))
    if (c != '.') digits.push_back(c);
  int exp10 = 0;
  std::from_chars(sci.data() + epos + 1 + (sci[epos + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp10);
  int decpt = exp10 + 1;
  if (neg) out.push_back('-');
  if (decpt <= -4 || decpt > 16) {
    out.push_back(digits[0]);
    if (digits.size() > 1) {
      out.push_back('.');
      out.append(digits, 1);
    }
    out.push_back('e');
    int e = decpt - 1;
    out.push_back(e < 0 ? '-' : '+');
    e = std::abs(e);
    if (e < 10) out.push_back('0');
    out += std::to_string(e);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-decpt), '0');
    out += digits;
  } else if (static_cast<std::size_t>(decpt) < digits.size()) {
    out.append(digits, 0, static_cast<std::size_t>(decpt));
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(decpt));
  } else {
    out += digits;
    out.append(static_cast<std::size_t>(decpt) - digits.size(), '0');
    out += ".0";
  }
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Walks the arena; guards against cycles, deep nesting and runaway sharing.
class ArenaJson {
 public:
  ArenaJson(const Decoder& dec, std::string& out, std::size_t input_size, std::size_t max_depth)
      : dec_(dec), out_(out), start_(out.size()), max_depth_(max_depth),
        budget_nodes_(8 * input_size + 4096), budget_bytes_(8 * input_size + 65536),
        on_path_(dec.path_flags()) {}

  void value(std::uint32_t id, std::size_t depth) {
    if (++visited_ > budget_nodes_) fail("shared references expand too much");
    const Node& n = dec_.node(id);
    switch (n.kind) {
      case K::none: out_ += "null"; break;
      case K::boolean: out_ += n.b ? "true" : "false"; break;
      case K::integer: append_int(out_, n.i); break;
      case K::big: out_ += n.text(); break;
      case K::floating: append_float_repr(out_, n.d); break;
      case K::str: append_json_str(out_, n.text()); break;
      case K::bytes: append_json_latin1(out_, n.text()); break;
      case K::tuple:
      case K::list:
      case K::dict: {
        if (depth >= max_depth_) fail("nested too deeply");
        if (on_path_[id]) fail("recursive structure cannot be written as JSON");
        on_path_[id] = 1;
        if (n.kind == K::dict) {
          out_.push_back('{');
          for (std::size_t k = 0; k < n.kids.size(); k += 2) {
            if (k) out_ += ", ";
            key(n.kids[k]);
            out_ += ": ";
            value(n.kids[k + 1], depth + 1);
          }
          out_.push_back('}');
        } else {
          out_.push_back('[');
          for (std::size_t k = 0; k < n.kids.size(); ++k) {
            if (k) out_ += ", ";
            value(n.kids[k], depth + 1);
          }
          out_.push_back(']');
        }
        on_path_[id] = 0;
        break;
      }
      default: fail("a global is not a value");
    }
    if (out_.size() - start_ > budget_bytes_) fail("shared references expand too much");
  }

  // json.dumps converts these key types; anything else is a TypeError there.
  void key(std::uint32_t id) {
    // Keys count as loads() counts them, so that this walker never accepts what loads()
    // refuses (its byte budget is the looser one already: JSON text is never shorter).
    if (++visited_ > budget_nodes_) fail("shared references expand too much");
    const Node& n = dec_.node(id);
    switch (n.kind) {
      case K::str: append_json_str(out_, n.text()); break;
      case K::integer: out_.push_back('"'); append_int(out_, n.i); out_.push_back('"'); break;
      case K::big: out_.push_back('"'); out_ += n.text(); out_.push_back('"'); break;
      case K::floating: out_.push_back('"'); append_float_repr(out_, n.d); out_.push_back('"'); break;
      case K::boolean: out_ += n.b ? "\"true\"" : "\"false\""; break;
      case K::none: out_ += "\"null\""; break;
      default: fail("dict key of this type cannot be written as JSON");
    }
  }

 private:
  const Decoder& dec_;
  std::string& out_;
  std::size_t start_;
  std::size_t max_depth_;
  std::size_t budget_nodes_, budget_bytes_;
  std::size_t visited_ = 0;
  std::vector<unsigned char>& on_path_;
};

// Arena -> Value with the same guards.
class ArenaValue {
 public:
  ArenaValue(const Decoder& dec, std::size_t input_size, std::size_t max_depth)
      : dec_(dec), max_depth_(max_depth), budget_(8 * input_size + 4096),
        budget_bytes_(8 * input_size + 65536), on_path_(dec.node_count(), 0) {}

  Value build(std::uint32_t id, std::size_t depth) {
    if (++visited_ > budget_) fail("shared references expand too much");
    const Node& n = dec_.node(id);
    auto text = [&] {
      bytes_ += n.text().size();
      if (bytes_ > budget_bytes_) fail("shared references expand too much");
      return std::string(n.text());
    };
    switch (n.kind) {
      case K::none: return Value::none();
      case K::boolean: return Value::boolean(n.b);
      case K::integer: return Value::integer(n.i);
      case K::big: return Value::big_integer(text());
      case K::floating: return Value::floating(n.d);
      case K::str: return Value::str(text());
      case K::bytes: return Value::bytes(text());
      case K::tuple:
      case K::list:
      case K::dict: {
        if (depth >= max_depth_) fail("nested too deeply");
        if (on_path_[id]) fail("recursive structure is not supported");
        on_path_[id] = 1;
        Value v;
        if (n.kind == K::dict) {
          Value::Pairs pairs;
          pairs.reserve(n.kids.size() / 2);
          for (std::size_t k = 0; k < n.kids.size(); k += 2) {
            Value key = build(n.kids[k], depth + 1);
            Value val = build(n.kids[k + 1], depth + 1);
            pairs.emplace_back(std::move(key), std::move(val));
          }
          v = Value::dict(std::move(pairs));
        } else {
          Value::Items items;
          items.reserve(n.kids.size());
          for (auto k : n.kids) items.push_back(build(k, depth + 1));
          v = n.kind == K::tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
        }
        on_path_[id] = 0;
        return v;
      }
      default: fail("a global is not a value");
    }
  }

 private:
  const Decoder& dec_;
  std::size_t max_depth_;
  std::size_t budget_, budget_bytes_;
  std::size_t visited_ = 0, bytes_ = 0;
  std::vector<unsigned char> on_path_;
};

Decoder& thread_decoder() {
  thread_local Decoder dec;
  return dec;
}

void append_value_json(std::string& out, const Value& v, std::size_t depth) {
  if (depth > 100000) fail("nested too deeply");
  switch (v.kind()) {
    case Value::Kind::none: out += "null"; break;
    case Value::Kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Value::Kind::integer: append_int(out, v.as_int()); break;
    case Value::Kind::big_integer: out += v.as_string(); break;
    case Value::Kind::floating: append_float_repr(out, v.as_float()); break;
    case Value::Kind::str: append_json_str(out, v.as_string()); break;
    case Value::Kind::bytes: append_json_latin1(out, v.as_string()); break;
    case Value::Kind::tuple:
    case Value::Kind::list: {
      out.push_back('[');
      bool first = true;
      for (auto& x : v.items()) {
        if (!first) out += ", ";
        first = false;
        append_value_json(out, x, depth + 1);
      }
      out.push_back(']');
      break;
    }
    case Value::Kind::dict: {
      out.push_back('{');
      bool first = true;
      for (auto& [k, x] : v.pairs()) {
        if (!first) out += ", ";
        first = false;
        switch (k.kind()) {
          case Value::Kind::str: append_json_str(out, k.as_string()); break;
          case Value::Kind::integer:
          case Value::Kind::big_integer: out += '"' + k.int_text() + '"'; break;
          case Value::Kind::floating: out.push_back('"'); append_float_repr(out, k.as_float()); out.push_back('"'); break;
          case Value::Kind::boolean: out += k.as_bool() ? "\"true\"" : "\"false\""; break;
          case Value::Kind::none: out += "\"null\""; break;
          default: fail("dict key of this type cannot be written as JSON");
        }
        out += ": ";
        append_value_json(out, x, depth + 1);
      }
      out.push_back('}');
      break;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- Value
bool Value::as_bool() const {
  if (kind_ != Kind::boolean) fail("value is not a bool");
  return std::get<bool>(v_);
}
std::int64_t Value::as_int() const {
  if (kind_ == Kind::big_integer) fail("int does not fit in 64 bits");
  if (kind_ != Kind::integer) fail("value is not an int");
  return std::get<std::int64_t>(v_);
}
std::string Value::int_text() const {
  if (kind_ == Kind::integer) return std::to_string(std::get<std::int64_t>(v_));
  if (kind_ == Kind::big_integer) return std::get<std::string>(v_);
  fail("value is not an int");
}
double Value::as_float() const {
  if (kind_ != Kind::floating) fail("value is not a float");
  return std::get<double>(v_);
}
const std::string& Value::as_string() const {
  if (kind_ != Kind::str && kind_ != Kind::bytes && kind_ != Kind::big_integer) fail("value is not a str or bytes");
  return std::get<std::string>(v_);
}
const Value::Items& Value::items() const {
  if (kind_ != Kind::tuple && kind_ != Kind::list) fail("value is not a tuple or list");
  return std::get<Items>(v_);
}
const Value::Pairs& Value::pairs() const {
  if (kind_ != Kind::dict) fail("value is not a dict");
  return std::get<Pairs>(v_);
}
const Value* Value::find(std::string_view key) const {
  for (auto& [k, v] : pairs())
    if (k.kind_ == Kind::str && std::get<std::string>(k.v_) == key) return &v;
  return nullptr;
}
const Value& Value::at(std::string_view key) const {
  if (const Value* v = find(key)) return *v;
  fail("no key '" + std::string(key) + "'");
}

Value loads(std::string_view data, const LoadOptions& options) {
  Decoder& dec = thread_decoder();
  auto root = dec.decode(data, options);
  return ArenaValue(dec, data.size(), options.max_depth).build(root, 0);
}

std::string to_json(const Value& value) {
  std::string out;
  append_json(out, value);
  return out;
}

void append_json(std::string& out, const Value& value) {
  auto mark = out.size();
  try {
    append_value_json(out, value, 0);
  } catch (...) {
    out.resize(mark);
    throw;
  }
}

void pickle_to_json(std::string_view data, std::string& out, const LoadOptions& options) {
  Decoder& dec = thread_decoder();
  auto root = dec.decode(data, options);
  auto mark = out.size();
  try {
    ArenaJson(dec, out, data.size(), options.max_depth).value(root, 0);
  } catch (...) {
    out.resize(mark);
    throw;
  }
}

double pickle_to_json_with(std::string_view data, std::string& out, std::string_view key,
                           const LoadOptions& options) {
  Decoder& dec = thread_decoder();
  auto root = dec.decode(data, options);
  auto mark = out.size();
  try {
    ArenaJson(dec, out, data.size(), options.max_depth).value(root, 0);
  } catch (...) {
    out.resize(mark);
    throw;
  }
  const Node& r = dec.node(root);
  if (r.kind == K::dict)
    for (std::size_t k = 0; k + 1 < r.kids.size(); k += 2) {
      const Node& kn = dec.node(r.kids[k]);
      const Node& vn = dec.node(r.kids[k + 1]);
      if (kn.kind == K::str && kn.text() == key && vn.kind == K::floating) return vn.d;
    }
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace concur::pickle
