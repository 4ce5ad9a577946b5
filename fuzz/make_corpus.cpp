// Writes the seed corpus of fuzz_serialize: every sample value of every case of
// serialize_types.hpp, encoded, as <dir>/seed-<case>-<n>, and one message of two large
// strings sent out of band under ids that the fuzz target's FakeOob serves. (Not a large
// block inline: a 1 MiB seed would make libFuzzer mutate 1 MiB inputs.)
//
// Usage: make_corpus <dir>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "serialize_types.hpp"

namespace {

namespace fs = std::filesystem;

// Hands out ids that FakeOob (fuzz_serialize.cpp) serves correctly: multiples of 5.
struct IdSink final : concur::detail::OobSink {
  std::uint64_t next = 0;
  std::uint64_t put(const void*, std::size_t) override { return 5 * next++; }
};

void write_file(const fs::path& path, std::size_t index, const concur::detail::Writer& w) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const char tag = static_cast<char>(index);
  out.write(&tag, 1);
  const auto b = w.bytes();
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  fs::create_directories(dir);
  std::size_t files = 0;
  for (std::size_t index = 0; index < concur_fuzz::kCaseCount; ++index) {
    concur_fuzz::visit_case(index, [&]<class Case>() {
      using T = typename Case::type;
      std::size_t n = 0;
      for (const T& v : concur_fuzz::samples<T>()) {
        concur::detail::Writer w;
        concur::detail::encode(w, v);
        write_file(dir / ("seed-" + std::to_string(index) + "-" + std::to_string(n++)), index, w);
        ++files;
      }
    });
  }
  // The out-of-band path: strings of exactly the threshold, by id.
  const std::string big(concur::detail::kOobThreshold, 'q');
  const std::size_t string_case = 1;
  IdSink sink;
  concur::detail::Writer oob_w;
  oob_w.set_oob_sink(&sink);
  concur::detail::encode(oob_w, big);
  concur::detail::encode(oob_w, big);
  write_file(dir / "seed-oob-id", string_case, oob_w);
  concur::detail::Writer vec_w;
  vec_w.set_oob_sink(&sink);
  concur::detail::encode(vec_w, std::vector<int>(concur::detail::kOobThreshold / sizeof(int), 7));
  write_file(dir / "seed-oob-vector", 2, vec_w);
  std::printf("make_corpus: %zu seeds in %s\n", files + 2, dir.c_str());
  return 0;
}
