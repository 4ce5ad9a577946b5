// The task an Executor builds when it is used through its abstract interface, where the
// concrete executor (threads or processes) is only known at run time.
//
// The process engine adds its remote face here: when fn and the arguments can cross a
// process boundary the task also carries the encoded call, so the same submit() works
// for thread pools and process pools alike.
#pragma once

#include "concur/detail/task.hpp"

namespace concur::detail {

template <class R, class F, class... Args>
StatePtr<FutureState<R>> make_portable_task(F&& fn, Args&&... args) {
  return make_local_task<R>(std::forward<F>(fn), std::forward<Args>(args)...);
}

}  // namespace concur::detail
