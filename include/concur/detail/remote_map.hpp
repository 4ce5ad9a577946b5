// map() of the pools whose workers are other processes (ProcessPoolExecutor,
// MPIPoolExecutor): tasks are checked at compile time like submit(), items travel alone
// or chunksize at a time as one call, and results come back in input order through the
// lazy, bounded map of detail/map.hpp.
#pragma once

#include <cstddef>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "concur/detail/map.hpp"
#include "concur/detail/remote_call.hpp"
#include "concur/future.hpp"

namespace concur::detail {

// One chunk of a map: fn over the items, run in the worker.
template <class Fn, class V, class... Args>
struct ChunkCall {
  std::vector<V> operator()(Fn fn, std::vector<std::tuple<Args...>> items) const {
    std::vector<V> out;
    out.reserve(items.size());
    for (auto& t : items) {
      if constexpr (std::is_same_v<V, std::monostate>) {
        std::apply(fn, std::move(t));
        out.emplace_back();
      } else {
        out.push_back(std::apply(fn, std::move(t)));
      }
    }
    return out;
  }
};

// map(fn, ranges...) of a remote pool. `submit_bulk(std::span<TaskPtr>)` hands tasks to
// the pool; `window(chunk)` is how many items the pool keeps in flight by default.
template <class Fn, class F, class SubmitBulk, class Window, class... Rs>
auto remote_map(F&& f, const MapOptions& opts, SubmitBulk submit_bulk, Window window,
                Rs&&... ranges) {
  using R = std::invoke_result_t<const Fn&, std::ranges::range_value_t<Rs>...>;
  using V = map_value_t<R>;
  static_assert(check_remote_call<R, Fn, std::ranges::range_value_t<Rs>...>());
  Fn fn(std::forward<F>(f));
  auto submit_items = [submit_bulk, fn](auto&& tuples) {
    std::vector<TaskPtr> tasks;
    std::vector<Future<R>> futures;
    tasks.reserve(tuples.size());
    futures.reserve(tuples.size());
    for (auto& t : tuples) {
      auto task = std::apply(
          [&](auto&... args) { return make_remote_task<R>(fn, std::move(args)...); }, t);
      tasks.emplace_back(task);
      futures.emplace_back(std::move(task));
    }
    submit_bulk(std::span<TaskPtr>(tasks));
    return futures;
  };
  auto submit_chunks = [submit_bulk, fn](auto&& chunks) {
    using Chunk = ChunkCall<Fn, V, std::ranges::range_value_t<Rs>...>;
    std::vector<TaskPtr> tasks;
    std::vector<Future<std::vector<V>>> futures;
    tasks.reserve(chunks.size());
    futures.reserve(chunks.size());
    for (auto& chunk : chunks) {
      auto task = make_remote_task<std::vector<V>>(Chunk{}, fn, std::move(chunk));
      tasks.emplace_back(task);
      futures.emplace_back(std::move(task));
    }
    submit_bulk(std::span<TaskPtr>(tasks));
    return futures;
  };
  std::size_t chunk = opts.chunksize ? opts.chunksize : 1;
  std::size_t in_flight = opts.buffersize ? opts.buffersize : window(chunk);
  MapOptions o = opts;
  o.buffersize = in_flight;
  return make_map_results<R>(o, in_flight, std::move(submit_items), std::move(submit_chunks),
                             std::forward<Rs>(ranges)...);
}

}  // namespace concur::detail
