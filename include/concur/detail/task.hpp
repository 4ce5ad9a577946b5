// Task types: a future's shared state that also carries the work producing it, so a
// submit is one allocation. Executors queue them as TaskPtr and call run() in a worker.
#pragma once

#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "concur/detail/shared_state.hpp"

namespace concur::detail {

// What fn(args...) returns when the task calls it with its stored (decayed) arguments.
template <class F, class... Args>
using call_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;

// Runs `call` and stores its outcome in `state` (which the caller has claimed).
template <class R, class Call>
void store_outcome(FutureState<R>& state, Call&& call) noexcept {
  try {
    if constexpr (std::is_void_v<R>) {
      std::forward<Call>(call)();
      state.store_value();
    } else {
      state.store_value(std::forward<Call>(call)());
    }
  } catch (...) {
    state.store_exception(std::current_exception());
  }
}

// fn(args...) run in-process.
template <class R, class Fn, class... Args>
class LocalTask final : public FutureState<R> {
 public:
  template <class F2, class... A2>
  explicit LocalTask(F2&& fn, A2&&... args)
      : call_(std::in_place, std::forward<F2>(fn), std::forward<A2>(args)...) {}

  bool run() noexcept override {
    // pending -> completing in one step; fails only if the task was cancelled.
    bool claimed = this->try_begin_complete();
    if (claimed) {
      store_outcome(*this, [this]() -> R {
        return std::apply(
            [](Fn& fn, Args&... args) -> R {
              return std::invoke(std::move(fn), std::move(args)...);
            },
            *call_);
      });
    }
    call_.reset();  // release captured resources now, not when the last handle goes
    return claimed;
  }

 private:
  std::optional<std::tuple<Fn, Args...>> call_;
};

template <class R, class F, class... Args>
StatePtr<FutureState<R>> make_local_task(F&& fn, Args&&... args) {
  return StatePtr<FutureState<R>>(
      new LocalTask<R, std::decay_t<F>, std::decay_t<Args>...>(std::forward<F>(fn),
                                                               std::forward<Args>(args)...));
}

}  // namespace concur::detail
