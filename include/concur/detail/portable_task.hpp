// The task an Executor builds when it is used through its abstract interface, where the
// concrete executor (threads or processes) is only known at run time.
//
// When fn is a function pointer or a lambda without captures and the arguments and the
// result are serializable, the task also has a remote face (RemoteTask, see
// remote_call.hpp): a thread pool runs it in place, a process pool encodes it and ships it
// to a worker. Otherwise the task is local-only, and a process pool rejects it at submit
// with a SerializationError saying why.
#pragma once

#include "concur/detail/remote_call.hpp"
#include "concur/detail/task.hpp"

namespace concur::detail {

template <class R, class F, class... Args>
StatePtr<FutureState<R>> make_portable_task(F&& fn, Args&&... args) {
  if constexpr (remote_portable_v<R, std::decay_t<F>, Args...>)
    return make_remote_task<R>(std::forward<F>(fn), std::forward<Args>(args)...);
  else
    return make_local_task<R>(std::forward<F>(fn), std::forward<Args>(args)...);
}

}  // namespace concur::detail
