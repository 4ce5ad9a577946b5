// Tests of concur/pickle.hpp against the real Python pickler: every value is pickled by
// /usr/bin/python3 at protocols 0-5 and our JSON must equal json.dumps of the same value.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "concur/pickle.hpp"

namespace pk = concur::pickle;

namespace {

std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

// Runs a Python program and returns its stdout (the child is reaped by pclose).
std::string python(const std::string& program) {
  std::string cmd = "/usr/bin/python3 -c '" + program + "'";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return {};
  std::string out;
  char buf[65536];
  while (std::size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  int rc = pclose(f);
  EXPECT_EQ(rc, 0) << "python failed";
  return out;
}

// The corpus: values of every supported kind, and LogRecord dicts as SocketHandler
// sends them. Bytes are compared as their latin-1 text (our documented extension).
const char* kCorpus = R"PY(
import pickle, json, sys, logging
def jsonable(v):
    if isinstance(v, (bytes, bytearray)): return v.decode("latin-1")
    if isinstance(v, (list, tuple)): return [jsonable(x) for x in v]
    if isinstance(v, dict): return {k: jsonable(x) for k, x in v.items()}
    return v
big = 2**200 + 12345
values = [
  None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -129, 2**31-1, -2**31, 2**31, 2**63-1, -2**63,
  2**63, -2**63-1, 2**64, big, -big, 10**300, 0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 1.5e16, 1e-4, 1e-5,
  123456.789, float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308,
  "", "a", "hello world", "quote\" back\\slash \n\r\t\x00\x1a\x7f\x80\xff",
  "unicode \u00e9\u4e2d\u6587 \U0001F600 emoji", "\ud800 lone", "x" * 300, "y" * 70000,
  b"", b"abc", bytes(range(256)), b"z" * 300,
  (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1], list(range(1500)),
  {}, {"a": 1}, {i: str(i) for i in range(1200)}, {1: "int", 2.5: "float", True: "bool", None: "none"},
  {"nested": [{"deep": (1, [2, {"x": None}])}], "t": (("a", b"b"),)},
  [[1, 2]] * 3, {"shared": ["s"] * 2},
]
shared = [1, 2, 3]
values.append({"a": shared, "b": shared, "c": (shared, shared)})
s = "memo me"
values.append([s, s, s])
# LogRecord dicts the way SocketHandler.makePickle builds them (protocol 1).
try:
    raise ValueError("bad \u00fc")
except ValueError:
    ei = sys.exc_info()
rec = logging.LogRecord("app.\u4e2d", logging.ERROR, "/p/file.py", 42, "msg %s %d %.2f", ("arg\u00e9", 7, 3.14159), ei, "func")
h = logging.Handler(); h.setFormatter(logging.Formatter())
h.format(rec)
d = dict(rec.__dict__); d["msg"] = rec.getMessage(); d["args"] = None; d["exc_info"] = None; d.pop("message", None)
values.append(d)
for v in values:
    for proto in range(0, 6):
        p = pickle.dumps(v, proto)
        print(proto, p.hex(), json.dumps(jsonable(v)), sep="\t")
)PY";

std::string escape_for_shell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out.push_back(c);
  }
  return out;
}

}  // namespace

TEST(Pickle, MatchesPythonJsonDumpsAtEveryProtocol) {
  std::string out = python(escape_for_shell(kCorpus));
  std::istringstream lines(out);
  std::string line;
  int checked = 0;
  while (std::getline(lines, line)) {
    auto t1 = line.find('\t');
    auto t2 = line.find('\t', t1 + 1);
    ASSERT_NE(t2, std::string::npos);
    std::string proto = line.substr(0, t1);
    std::string data = unhex(line.substr(t1 + 1, t2 - t1 - 1));
    std::string expected = line.substr(t2 + 1);
    std::string got;
    try {
      pk::pickle_to_json(data, got);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "protocol " << proto << " " << expected.substr(0, 80) << ": " << e.what();
      continue;
    }
    EXPECT_EQ(got, expected) << "protocol " << proto;
    // The Value path agrees with the direct path.
    EXPECT_EQ(pk::to_json(pk::loads(data)), expected) << "protocol " << proto;
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

TEST(Pickle, ValueAccessors) {
  // {"n": 1, "s": "x", "f": 2.5, "b": b"\x00", "big": 2**70, "l": [None, True]} at protocol 2
  std::string out = python(escape_for_shell(
      "import pickle,sys; sys.stdout.write(pickle.dumps({\"n\": 1, \"s\": \"x\", \"f\": 2.5, \"b\": b\"\\x00\", "
      "\"big\": 2**70, \"l\": [None, True], \"t\": (1,)}, 2).hex())"));
  auto v = pk::loads(unhex(out));
  ASSERT_TRUE(v.is_dict());
  EXPECT_EQ(v.at("n").as_int(), 1);
  EXPECT_EQ(v.at("s").as_string(), "x");
  EXPECT_EQ(v.at("f").as_float(), 2.5);
  EXPECT_TRUE(v.at("b").is_bytes());
  EXPECT_EQ(v.at("b").as_string(), std::string(1, '\0'));
  EXPECT_EQ(v.at("big").int_text(), "1180591620717411303424");
  EXPECT_THROW(v.at("big").as_int(), pk::PickleError);
  EXPECT_TRUE(v.at("l").items()[0].is_none());
  EXPECT_TRUE(v.at("l").items()[1].as_bool());
  EXPECT_TRUE(v.at("t").is_tuple());
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_THROW(v.at("missing"), pk::PickleError);
  EXPECT_THROW(v.at("n").as_string(), pk::PickleError);
}

namespace {
// A byte string from a literal that may hold NULs.
template <std::size_t N>
std::string B(const char (&s)[N]) {
  return std::string(s, N - 1);
}

void expect_refused(const std::string& data, const std::string& needle) {
  std::string out = "keep";
  try {
    pk::pickle_to_json(data, out);
    ADD_FAILURE() << "accepted: " << needle;
  } catch (const pk::PickleError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_EQ(out, "keep");
  EXPECT_THROW(pk::loads(data), pk::PickleError);
}
}  // namespace

TEST(Pickle, RefusesCodeExecutionAndGarbage) {
  expect_refused("cos\nsystem\n(S'echo hi'\ntR.", "refusing to load global os.system");
  expect_refused(B("\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93."), "os.system");
  expect_refused(std::string("\x80\x02]q\x00(K\x01K\x02" "e", 10), "truncated");
  expect_refused("\xff", "unknown opcode 0xff");
  expect_refused("(i__main__\nX\n.", "INST");
  expect_refused(std::string("\x80\x02}q\x00" "b.", 6), "BUILD");
  expect_refused(std::string("\x80\x04\x8f\x94.", 5), "EMPTY_SET");
  expect_refused(std::string("\x80\x05\x97.", 4), "NEXT_BUFFER");
  expect_refused(std::string("X\xff\xff\xff\x7f", 5), "runs past the end");
  expect_refused(std::string("\x80\x06N.", 4), "unsupported protocol");
  expect_refused("", "empty");
  expect_refused(".", "empty stack");
  expect_refused("h\x05.", "memo key 5 not found");
  expect_refused(B("X\x02\x00\x00\x00\xc3(."), "UTF-8");
  expect_refused("(]]d.", "unhashable");
  // _codecs.encode is only honoured for latin-1 bytes reconstruction.
  expect_refused("c_codecs\nencode\n(Vabc\nVutf8\ntR.", "REDUCE");
}

TEST(Pickle, RecursiveAndExplosiveStructuresAreRefused) {
  // l = []; l.append(l)
  expect_refused(B("\x80\x02]q\x00h\x00" "a."), "recursive");
  // Billion laughs: each level is a list holding the previous level ten times.
  std::string bomb = B("\x80\x02]q\x00");
  bomb += "K\x01" "a";
  for (int level = 1; level < 12; ++level) {
    bomb += "]q";
    bomb.push_back(static_cast<char>(level));
    bomb += "(";
    for (int k = 0; k < 10; ++k) {
      bomb += "h";
      bomb.push_back(static_cast<char>(level - 1));
    }
    bomb += "e";
  }
  bomb += ".";
  expect_refused(bomb, "expand too much");
  // Deep nesting.
  std::string deep = "\x80\x02";
  for (int i = 0; i < 5000; ++i) deep += "]";
  for (int i = 0; i < 4999; ++i) deep += "a";
  deep += ".";
  expect_refused(deep, "nested too deeply");
}

TEST(Pickle, TrailingDataAfterStopIsIgnored) {
  std::string out;
  pk::pickle_to_json(std::string("K\x05.garbage", 10), out);
  EXPECT_EQ(out, "5");
}

// Found by fuzz/fuzz_pickle: a memo key near max_memo_key sized a dense vector of 2^24
// entries (64 MiB, kept by the thread's decoder) from a 7-byte pickle. Such keys are
// legal, just rare: they must still work, without that allocation.
// Both readers bound how far shared references may expand, and count the same nodes:
// pickle_to_json once skipped dict keys, so a shared dict of many keys expanded within
// its budget but not within loads()'s (found by fuzz_pickle).
TEST(Pickle, BothReadersRefuseTheSameExpansion) {
  std::string p = B("\x80\x04}(");
  for (int i = 0; i < 20; ++i) {
    char key[4];
    std::snprintf(key, sizeof key, "k%02d", i);
    p += B("\x8c\x03") + key + B("K\x01");
  }
  p += "u";
  for (int i = 0; i < 5; ++i) p += B("22\x87");  // 3^5 references to the dict
  p += ".";
  EXPECT_THROW(pk::loads(p), pk::PickleError);
  std::string out;
  EXPECT_THROW(pk::pickle_to_json(p, out), pk::PickleError);
  // Three times fewer references: both accept, with the same text.
  std::string q = p.substr(0, p.size() - 4) + ".";
  std::string direct;
  pk::pickle_to_json(q, direct);
  EXPECT_EQ(direct, pk::to_json(pk::loads(q)));
}

TEST(Pickle, SparseMemoKeysWork) {
  EXPECT_TRUE(pk::loads(std::string("Nr\xff\xff\xff\x00.", 7)).is_none());
  EXPECT_EQ(pk::to_json(pk::loads(std::string("K\x07r\xff\xff\xff\x00" "0j\xff\xff\xff\x00.", 14))), "7");
  // MEMOIZE takes len(memo) as its key, as in Python: after one entry under key 5 it is 1.
  // pickle.loads(b'\x80\x04Kar\x05\x00\x00\x00K\x07\x94\x86h\x01\x86.') == ((97, 7), 7)
  const std::string p("\x80\x04Kar\x05\x00\x00\x00K\x07\x94\x86h\x01\x86.", 17);
  EXPECT_EQ(pk::to_json(pk::loads(p)), "[[97, 7], 7]");
}

// Found by fuzz/fuzz_pickle: checking that a dict key is hashable walked every path
// through shared tuples, 3^60 of them for this 188-byte pickle (t = (t, t, t), 60 times).
TEST(Pickle, SharedTupleKeysAreCheckedInLinearTime) {
  std::string p = B("\x80\x04}K\x01");
  for (int i = 0; i < 60; ++i) p += B("22\x87");
  p += "Ns.";
  const auto start = std::chrono::steady_clock::now();
  // Refused, and quickly: the key, written out, would expand too much.
  EXPECT_THROW(pk::to_json(pk::loads(p)), pk::PickleError);
  std::string out;
  EXPECT_THROW(pk::pickle_to_json(p, out), pk::PickleError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // A list anywhere inside a tuple key is still refused, however deep.
  std::string q = B("\x80\x04}]");
  for (int i = 0; i < 150; ++i) q += B("\x85");
  q += "Ns.";
  expect_refused(q, "unhashable");
}

// Dicts follow Python's `d[k] = v`: a key equal to one already there (1 == True == 1.0,
// 0 == False == 0.0 == -0.0, an int and the float exactly equal to it, equal str, equal
// bytes, tuples of equal items) keeps the first key object and its place, and takes the
// last value. Only hand-made pickles repeat a key. Each expected string below is what
// /usr/bin/python3 (3.11) printed for json.dumps(pickle.loads(bytes.fromhex(HEX))).
struct DupCase {
  const char* name;
  const char* hex;
  const char* json;
};
// pickle.loads(bytes.fromhex(HEX)) by /usr/bin/python3 3.11, then json.dumps:
const DupCase kDupJson[] = {
    // one_then_true: {1: 'a'} then d[True] = 'b'
    //   Python: {"1": "b"}
    {"one_then_true", "80047d94284b018c016194888c016294752e", "{\"1\": \"b\"}"},
    // true_one_onefloat: True, 1, 1.0 assigned in turn
    //   Python: {"true": "c"}
    {"true_one_onefloat", "80047d28888c01614b018c0162473ff00000000000008c0163752e", "{\"true\": \"c\"}"},
    // zeros: 0, False, 0.0, -0.0 assigned in turn
    //   Python: {"0": "d"}
    {"zeros", "80047d284b008c0161898c01624700000000000000008c01634780000000000000008c0164752e", "{\"0\": \"d\"}"},
    // negzero_first: -0.0 then 0: the first key object stays
    //   Python: {"-0.0": "b"}
    {"negzero_first", "80047d284780000000000000008c01614b008c0162752e", "{\"-0.0\": \"b\"}"},
    // int_encodings: 5 as BININT1, BININT2, BININT, LONG1, INT, LONG, LONG4
    //   Python: {"5": "g"}
    {"int_encodings", "80047d284b058c01614d05008c01624a050000008c01638a01058c016449350a8c01654c354c0a8c01668b0200000005008c0167752e", "{\"5\": \"g\"}"},
    // neg_int_encodings: -1 as BININT, LONG1, INT, and -1.0
    //   Python: {"-1": "d"}
    {"neg_int_encodings", "80047d284affffffff8c01618a01ff8c0162492d310a8c016347bff00000000000008c0164752e", "{\"-1\": \"d\"}"},
    // big_vs_float: 2**64 (LONG1), 2.0**64, 2**64 (LONG), 2**64+1
    //   Python: {"18446744073709551616": "c", "18446744073709551617": "d"}
    {"big_vs_float", "80047d288a090000000000000000018c01614743f00000000000008c01624c31383434363734343037333730393535313631364c0a8c01638a090100000000000000018c0164752e", "{\"18446744073709551616\": \"c\", \"18446744073709551617\": \"d\"}"},
    // int64_edges: -2.0**63, -2**63, 2.0**63, 2**63
    //   Python: {"-9.223372036854776e+18": "b", "9.223372036854776e+18": "d"}
    {"int64_edges", "80047d2847c3e00000000000008c01618a0800000000000000808c01624743e00000000000008c01638a090000000000000080008c0164752e", "{\"-9.223372036854776e+18\": \"b\", \"9.223372036854776e+18\": \"d\"}"},
    // float_1e300_vs_int: 1e300, 10**300 (not equal), int(1e300) (equal)
    //   Python: {"1e+300": "c", "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000": "b"}
    {"float_1e300_vs_int", "80047d28477e37e43c8800759c8c01614c313030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030300a8c01624c313030303030303030303030303030303035323530343736303235353230343432303234383730343436383538313130383135393135343931353835343131353531313830323435373938383930383139353738363337313337353038303434373836343034333730343434333833323838333837383137363934323532333233353336303433303537353634343739323138343738363730363938323834383338373230303932363537353830333733373833303233333739343738383039303035393336383935333233343937303739393934353038313131393033383936373634303838303037343635323734323738303134323439343537393235383738383832303035363834323833383131353636393437323139363338363836353435393430303534303136300a8c0163752e", "{\"1e+300\": \"c\", \"1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\": \"b\"}"},
    // fractional: 1, 1.5, 1.5, inf, inf, -inf
    //   Python: {"1": "a", "1.5": "c", "Infinity": "e", "-Infinity": "f"}
    {"fractional", "80047d284b018c0161473ff80000000000008c0162473ff80000000000008c0163477ff00000000000008c0164477ff00000000000008c016547fff00000000000008c0166752e", "{\"1\": \"a\", \"1.5\": \"c\", \"Infinity\": \"e\", \"-Infinity\": \"f\"}"},
    // str_encodings: 'a' as SHORT_BINUNICODE, BINUNICODE, UNICODE, SHORT_BINSTRING, STRING, BINUNICODE8
    //   Python: {"a": 6}
    {"str_encodings", "80047d288c01614b015801000000614b0256610a4b035501614b04532761270a4b058d0100000000000000614b06752e", "{\"a\": 6}"},
    // str_unicode: '\u00e9' and '\ud800' in UTF-8 and raw-unicode-escape
    //   Python: {"\u00e9": 2, "\ud800": 4}
    {"str_unicode", "80047d288c02c3a94b01565c75303065390a4b028c03eda0804b03565c75643830300a4b04752e", "{\"\\u00e9\": 2, \"\\ud800\": 4}"},
    // none_keys: None, 0, None
    //   Python: {"null": "c", "0": "b"}
    {"none_keys", "80047d284e8c01614b008c01624e8c0163752e", "{\"null\": \"c\", \"0\": \"b\"}"},
    // nan_same_object: the same NaN object twice (MEMOIZE, then BINGET)
    //   Python: {"NaN": "b"}
    {"nan_same_object", "80047d28477ff8000000000000948c016168008c0162752e", "{\"NaN\": \"b\"}"},
    // nan_two_objects: two NaN objects (two BINFLOAT): two keys
    //   Python: {"NaN": "a", "NaN": "b"}
    {"nan_two_objects", "80047d28477ff80000000000008c0161477ff80000000000008c0162752e", "{\"NaN\": \"a\", \"NaN\": \"b\"}"},
    // dict_opcode: DICT (protocol 1 style) with 1, True, 2, 1.0
    //   Python: {"1": "d", "2": "c"}
    {"dict_opcode", "284b018c0161888c01624b028c0163473ff00000000000008c0164642e", "{\"1\": \"d\", \"2\": \"c\"}"},
    // dict_opcode_p0: protocol 0 SETITEM of 1, True (I01), 1.0 (FLOAT)
    //   Python: {"1": "c"}
    {"dict_opcode_p0", "286470300a49310a56610a734930310a56620a7346312e300a56630a732e", "{\"1\": \"c\"}"},
    // position_kept: a, b, a by SETITEMS, then c and b by SETITEM
    //   Python: {"a": 3, "b": 5, "c": 4}
    {"position_kept", "80047d288c01614b018c01624b028c01614b03758c01634b04738c01624b05732e", "{\"a\": 3, \"b\": 5, \"c\": 4}"},
    // memo_dict_later: SETITEM on the memoised dict after it left the stack
    //   Python: {"x": 2}
    {"memo_dict_later", "80047d948c01784b01733068008c01784b02732e", "{\"x\": 2}"},
    // created_twice: the key pickle_to_json_with looks up, twice
    //   Python: {"created": 2.5, "msg": "m"}
    {"created_twice", "80047d288c0763726561746564473ff80000000000008c036d73678c016d8c0763726561746564474004000000000000752e", "{\"created\": 2.5, \"msg\": \"m\"}"},
};


TEST(Pickle, RepeatedDictKeysFollowPythonDictSemantics) {
  for (const auto& c : kDupJson) {
    const std::string p = unhex(c.hex);
    EXPECT_EQ(pk::to_json(pk::loads(p)), c.json) << c.name;
    std::string out;
    pk::pickle_to_json(p, out);
    EXPECT_EQ(out, c.json) << c.name;
    std::string with;
    const double created = pk::pickle_to_json_with(p, with, "created");
    EXPECT_EQ(with, c.json) << c.name;
    if (std::string_view(c.name) == "created_twice") {
      EXPECT_EQ(created, 2.5);
    }
  }
  // The same NaN object is one key; two NaN objects are two keys (as in Python, where
  // nan != nan but a dict finds a key by identity first). The Value keeps both.
  const pk::Value two_nans = pk::loads(unhex("80047d28477ff80000000000008c0161477ff80000000000008c0162752e"));
  ASSERT_EQ(two_nans.pairs().size(), 2u);
  EXPECT_TRUE(std::isnan(two_nans.pairs()[0].first.as_float()));
  EXPECT_TRUE(std::isnan(two_nans.pairs()[1].first.as_float()));
  // The first key object stays: True, not 1 or 1.0.
  const pk::Value first = pk::loads(unhex("80047d28888c01614b018c0162473ff00000000000008c0163752e"));
  ASSERT_EQ(first.pairs().size(), 1u);
  EXPECT_TRUE(first.pairs()[0].first.is_bool());
  EXPECT_EQ(first.pairs()[0].second.as_string(), "c");
}

// Keys json.dumps refuses (bytes, tuples), checked on the Value against Python's
// len(d) and repr(d).
TEST(Pickle, RepeatedNonJsonDictKeysFollowPythonDictSemantics) {
  auto keys_of = [](const std::string& hex) { return pk::loads(unhex(hex)).pairs(); };
  // {'a': 3, b'a': 2}: str and bytes are never equal.
  auto str_bytes = keys_of("80047d288c01614b014301614b028c01614b03752e");
  ASSERT_EQ(str_bytes.size(), 2u);
  EXPECT_TRUE(str_bytes[0].first.is_str());
  EXPECT_EQ(str_bytes[0].second.as_int(), 3);
  EXPECT_TRUE(str_bytes[1].first.is_bytes());
  EXPECT_EQ(str_bytes[1].second.as_int(), 2);
  // {b'a': 2}: SHORT_BINBYTES and BINBYTES of the same bytes.
  auto bytes_dup = keys_of("80047d284301614b014201000000614b02752e");
  ASSERT_EQ(bytes_dup.size(), 1u);
  EXPECT_EQ(bytes_dup[0].second.as_int(), 2);
  // {(1, 2): 'b', (1, 3): 'c'}: (True, 2.0) == (1, 2); the first key object stays.
  auto tuples = keys_of("80047d284b014b02868c016188474000000000000000868c01624b014b03868c0163752e");
  ASSERT_EQ(tuples.size(), 2u);
  EXPECT_EQ(tuples[0].first, pk::Value::tuple({pk::Value::integer(1), pk::Value::integer(2)}));
  EXPECT_EQ(tuples[0].second.as_string(), "b");
  EXPECT_EQ(tuples[1].second.as_string(), "c");
  // {((1,), 2): 'b'}: ((True,), 2.0) == ((1,), 2).
  auto nested = keys_of("80047d284b01854b02868c01618885474000000000000000868c0162752e");
  ASSERT_EQ(nested.size(), 1u);
  EXPECT_EQ(nested[0].second.as_string(), "b");
  // {(): 'c'}: EMPTY_TUPLE twice and MARK TUPLE.
  auto empty = keys_of("80047d28298c0161298c016228748c0163752e");
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0].second.as_string(), "c");
  // {(nan,): 'b', (nan,): 'c'}: two tuples holding the same NaN object are equal (tuple
  // comparison also tries identity first); a tuple holding another NaN is not.
  auto nan_tuples = keys_of("80047d28477ff800000000000094858c01616800858c0162477ff8000000000000858c0163752e");
  ASSERT_EQ(nan_tuples.size(), 2u);
  EXPECT_EQ(nan_tuples[0].second.as_string(), "b");
  EXPECT_EQ(nan_tuples[1].second.as_string(), "c");
  // A dict keyed by a function is read (Python: pickle.loads(...) is None here), though
  // it could not be written out.
  EXPECT_TRUE(pk::loads(B("}c_codecs\nencode\nK\x01sc_codecs\nencode\nK\x02s0N.")).is_none());
  // TypeError: unhashable type: 'bytearray' (BYTEARRAY8 as a key, or inside a tuple key).
  expect_refused(unhex("80057d28960100000000000000618c0161752e"), "unhashable");
  expect_refused(unhex("80057d2896010000000000000061858c0161752e"), "unhashable");
}

// Finding a repeated key costs O(1): 100000 assignments to 16 keys, and 100000 distinct
// keys, read quickly; so are repeated keys made of tuples that share everything.
TEST(Pickle, RepeatedDictKeysAreFoundInLinearTime) {
  const auto start = std::chrono::steady_clock::now();
  std::string p = B("\x80\x04}(");
  for (int i = 0; i < 100000; ++i) {
    p += 'K';
    p += static_cast<char>(i % 16);
    p += 'K';
    p += static_cast<char>(i % 251);
  }
  p += "u.";
  const pk::Value v = pk::loads(p);
  ASSERT_EQ(v.pairs().size(), 16u);
  EXPECT_EQ(v.pairs()[15].second.as_int(), 99999 % 251);
  std::string q = B("\x80\x04}(");
  for (int i = 0; i < 100000; ++i) {
    q += 'J';
    for (int b = 0; b < 4; ++b) q += static_cast<char>((i >> (8 * b)) & 0xff);
    q += 'N';
  }
  q += "u.";
  std::string out;
  pk::pickle_to_json(q, out);
  EXPECT_EQ(pk::loads(q).pairs().size(), 100000u);
  // Past the scanned size, the hash index merges keys the same way. Python:
  // json.dumps(pickle.loads(...)) starts {"1000": "c", "1001": "d", "1002": null, ...
  // and ends ..., "1039": null, "1": "b"} (1000 <- 1000.0, 1001 <- BININT, 1 <- True).
  std::string r = B("\x80\x04}(");
  for (int i = 0; i < 40; ++i) {
    r += 'M';
    r += static_cast<char>((1000 + i) & 0xff);
    r += static_cast<char>((1000 + i) >> 8);
    r += 'N';
  }
  r += B("K\x01\x8c\x01" "a\x88\x8c\x01" "bG\x40\x8f\x40\x00\x00\x00\x00\x00\x8c\x01" "cJ\xe9\x03\x00\x00\x8c\x01" "du.");
  std::string big_json;
  pk::pickle_to_json(r, big_json);
  EXPECT_EQ(big_json.substr(0, 33), "{\"1000\": \"c\", \"1001\": \"d\", \"1002\"");
  EXPECT_EQ(big_json.substr(big_json.size() - 23), "\"1039\": null, \"1\": \"b\"}");
  EXPECT_EQ(pk::to_json(pk::loads(r)), big_json);
  // t = (t, t, t) 7 times from K 1, memoised, then the same built again from True:
  // equal keys, found without walking the 3^7 leaves.
  std::string t = B("\x80\x04}K\x01");
  for (int i = 0; i < 7; ++i) t += B("22\x87");
  t += B("\x94K\x00s\x88");
  for (int i = 0; i < 7; ++i) t += B("22\x87");
  t += B("K\x01sh\x00K\x02s.");
  const pk::Value shared = pk::loads(t);
  ASSERT_EQ(shared.pairs().size(), 1u);
  EXPECT_EQ(shared.pairs()[0].second.as_int(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}
