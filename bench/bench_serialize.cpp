// Serialization layer: encode + decode round trips, beside the memcpy of the same bytes
// and beside cereal's own BinaryOutputArchive over a std::stringstream, in one binary.
//
// Each benchmark reports bytes/s of payload; compare a codec with its memcpy line of the
// same size. The memcpy baselines copy the payload twice (into a message buffer and out
// of it into preallocated memory): the data movement an encode + decode cannot avoid.
// BM_memcpy_into_new_vector adds the allocation that decoding into a new vector costs.
// Run: build/release/bench/bench_serialize --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <cereal/archives/binary.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "concur/serialize.hpp"

namespace {

using concur::detail::decode;
using concur::detail::encode;
using concur::detail::Reader;
using concur::detail::Writer;

struct Order {
  std::int64_t id = 0;
  double price = 0;
  std::int32_t quantity = 0;
  std::string symbol;
  std::vector<int> fills;
  template <class Ar>
  void serialize(Ar& ar) {
    ar(id, price, quantity, symbol, fills);
  }
};

Order sample_order() { return Order{123456789, 101.25, 300, "ACME", {100, 100, 100}}; }

std::size_t payload(const Order& o) {
  return sizeof o.id + sizeof o.price + sizeof o.quantity + o.symbol.size() +
         o.fills.size() * sizeof(int);
}

template <class T>
void round_trip(benchmark::State& state, const T& value, std::size_t bytes) {
  Writer w;
  for (auto _ : state) {
    w.clear();
    encode(w, value);
    Reader r(w.bytes());
    auto back = decode<T>(r);
    benchmark::DoNotOptimize(back);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

// ------------------------------------------------------------------ concur

void BM_int(benchmark::State& state) {
  int v = 42;
  benchmark::DoNotOptimize(v);
  round_trip(state, v, sizeof v);
}
BENCHMARK(BM_int);

void BM_tuple_long_double(benchmark::State& state) {
  const std::tuple<long, double> v(7, 2.5);
  round_trip(state, v, sizeof(long) + sizeof(double));
}
BENCHMARK(BM_tuple_long_double);

void BM_vector_int(benchmark::State& state) {
  const std::vector<int> v(static_cast<std::size_t>(state.range(0)), 7);
  round_trip(state, v, v.size() * sizeof(int));
}
BENCHMARK(BM_vector_int)->Arg(1024)->Arg(1 << 20);

void BM_string64(benchmark::State& state) {
  const std::string s(64, 's');
  round_trip(state, s, s.size());
}
BENCHMARK(BM_string64);

void BM_user_struct(benchmark::State& state) {
  const Order o = sample_order();
  round_trip(state, o, payload(o));
}
BENCHMARK(BM_user_struct);

// The same comparison interleaved iteration by iteration, so that load from other
// processes affects both sides alike: reports codec time (as the benchmark's time) and
// memcpy_ratio = (memcpy into a message + into a new vector) / (encode + decode).
void BM_vector_int_vs_memcpy(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const std::vector<int> v(n, 7);
  std::vector<std::byte> msg(n * sizeof(int) + 16);
  Writer w;
  clock::duration codec{}, copy{};
  for (auto _ : state) {
    const auto t0 = clock::now();
    w.clear();
    encode(w, v);
    Reader r(w.bytes());
    auto back = decode<std::vector<int>>(r);
    benchmark::DoNotOptimize(back.data());
    const auto t1 = clock::now();
    std::memcpy(msg.data() + 16, v.data(), n * sizeof(int));
    benchmark::ClobberMemory();
    const int* p = reinterpret_cast<const int*>(msg.data() + 16);
    std::vector<int> dst(p, p + n);
    benchmark::DoNotOptimize(dst.data());
    const auto t2 = clock::now();
    codec += t1 - t0;
    copy += t2 - t1;
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  state.counters["memcpy_ratio"] =
      std::chrono::duration<double>(copy) / std::chrono::duration<double>(codec);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * sizeof(int)));
}
BENCHMARK(BM_vector_int_vs_memcpy)->Arg(1024)->Arg(1 << 20)->UseManualTime();

// ------------------------------------------------------------------ cereal's binary archive

void BM_user_struct_cereal_binary_stringstream(benchmark::State& state) {
  const Order o = sample_order();
  for (auto _ : state) {
    std::stringstream ss;
    {
      cereal::BinaryOutputArchive out(ss);
      out(o);
    }
    Order back;
    {
      cereal::BinaryInputArchive in(ss);
      in(back);
    }
    benchmark::DoNotOptimize(back);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload(o)));
}
BENCHMARK(BM_user_struct_cereal_binary_stringstream);

// ------------------------------------------------------------------ memcpy baselines

// Sizes known at compile time, as the codec's are for scalars, so memcpy is inlined too.
template <std::size_t N>
void BM_memcpy_fixed(benchmark::State& state) {
  alignas(16) std::byte src[N] = {}, msg[N + 8], dst[N];
  for (auto _ : state) {
    benchmark::DoNotOptimize(src);
    std::memcpy(msg, src, N);
    benchmark::DoNotOptimize(msg);
    std::memcpy(dst, msg, N);
    benchmark::DoNotOptimize(dst);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * N));
}
// 4: int, 16: tuple<long,double>, 64: string64.
BENCHMARK(BM_memcpy_fixed<4>);
BENCHMARK(BM_memcpy_fixed<16>);
BENCHMARK(BM_memcpy_fixed<64>);

void BM_memcpy(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> src(n, std::byte{7}), msg(n + 8), dst(n);
  for (auto _ : state) {
    std::memcpy(msg.data(), src.data(), n);
    benchmark::ClobberMemory();
    std::memcpy(dst.data(), msg.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
// vector<int> of 1 K and 1 M elements.
BENCHMARK(BM_memcpy)->Arg(4096)->Arg(4 << 20);

// Why detail::copy_bytes exists: the same copies with each destination 8 bytes past its
// source modulo 4 KiB, a layout the heap produces by itself (glibc's rep movsb stalls).
void BM_memcpy_aliased_4k(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const std::size_t stride = (n + 4095) / 4096 * 4096 + 4096;
  std::vector<std::byte> arena(3 * stride + 4096, std::byte{7});
  std::byte* src = arena.data() + (4096 - reinterpret_cast<std::uintptr_t>(arena.data()) % 4096);
  std::byte* msg = src + stride + 8;
  std::byte* dst = msg + stride + 8;
  for (auto _ : state) {
    std::memcpy(msg, src, n);
    benchmark::ClobberMemory();
    std::memcpy(dst, msg, n);
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_memcpy_aliased_4k)->Arg(4096);

// Decoding into a new std::vector allocates; this is the floor for that.
void BM_memcpy_into_new_vector(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  std::vector<int> src(n, 7);
  std::vector<std::byte> msg(n * sizeof(int) + 8);
  for (auto _ : state) {
    std::memcpy(msg.data(), src.data(), n * sizeof(int));
    benchmark::ClobberMemory();
    const int* p = reinterpret_cast<const int*>(msg.data());
    std::vector<int> dst(p, p + n);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * sizeof(int)));
}
BENCHMARK(BM_memcpy_into_new_vector)->Arg(1024)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
