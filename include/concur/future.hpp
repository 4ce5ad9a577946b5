// concur/future.hpp: Future<T>, the handle to a result that is not there yet.
//
// Python's concurrent.futures.Future for C++: a cheap, copyable handle (copies share one
// state) that can be waited on with or without a timeout, cancelled while pending, given
// callbacks, chained with then(), and awaited with co_await. Executors create futures;
// code that produces results by other means can create one and complete it itself.
//
// Guarantees:
//  - result() returns the value, or rethrows the task's exception with its original type,
//    or throws CancelledError / TimeoutError.
//  - An outcome is set exactly once; a second set_result()/set_exception() throws
//    InvalidStateError and keeps the first.
//  - Callbacks run once each, in the order added: at once in the caller's thread when the
//    future is already done, otherwise in the thread that completes it. An exception
//    escaping a callback is reported on stderr and the remaining callbacks still run.
//  - All members are thread-safe.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

#include "concur/detail/shared_state.hpp"
#include "concur/errors.hpp"

namespace concur {

template <class T>
class Future;
class AnyFuture;

// Tag for Future::cancel(kill_running): cancel even a running task, where the executor can
// stop it (the process pool kills and replaces the worker running it).
struct kill_running_t {
  explicit kill_running_t() = default;
};
inline constexpr kill_running_t kill_running{};

namespace detail {
template <class T>
struct is_future : std::false_type {};
template <class T>
struct is_future<Future<T>> : std::true_type {};

template <class T>
struct result_ref {
  using type = const T&;
};
template <>
struct result_ref<void> {
  using type = void;
};

// Common implementation of Future<T> and AnyFuture over a state type S.
template <class S>
class FutureHandle {
 public:
  // True when this handle refers to a state (false only after being moved from).
  bool valid() const noexcept { return static_cast<bool>(state_); }

  // Attempts to cancel: true if the future is (now) cancelled, false if it is already
  // running or finished.
  bool cancel() const noexcept { return state_->cancel(); }
  // Cancels even when running, if the executor can stop the running work; otherwise
  // behaves like cancel().
  bool cancel(kill_running_t) const noexcept {
    if (state_->cancel()) return true;
    return state_->running() && state_->request_kill();
  }
  bool cancelled() const noexcept { return state_->cancelled(); }
  bool running() const noexcept { return state_->running(); }
  bool done() const noexcept { return state_->done(); }

  // Blocks until done; with a timeout, returns false if it ran out first. Never throws.
  bool wait() const noexcept { return state_->wait(); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const noexcept {
    return state_->wait(deadline_after(timeout));
  }

  // The task's exception (null if it succeeded). Throws CancelledError / TimeoutError.
  std::exception_ptr exception() const { return exception_until(std::nullopt); }
  template <class Rep, class Period>
  std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    return exception_until(deadline_after(timeout));
  }

  // Executor side: true if now running, false if it had been cancelled.
  bool set_running_or_notify_cancel() const { return state_->set_running_or_notify_cancel(); }
  // Completes the future with an exception; InvalidStateError if it is already done.
  void set_exception(std::exception_ptr e) const { state_->set_exception(std::move(e)); }
  template <class E, class = std::enable_if_t<!std::is_same_v<std::decay_t<E>, std::exception_ptr>>>
  void set_exception(E&& e) const {
    state_->set_exception(std::make_exception_ptr(std::forward<E>(e)));
  }

  // The underlying state (for executors and adapters).
  S* state() const noexcept { return state_.get(); }

  friend bool operator==(const FutureHandle& a, const FutureHandle& b) noexcept {
    return a.state_.get() == b.state_.get();
  }
  friend auto operator<=>(const FutureHandle& a, const FutureHandle& b) noexcept {
    return std::compare_three_way{}(static_cast<const void*>(a.state_.get()),
                                    static_cast<const void*>(b.state_.get()));
  }

 protected:
  FutureHandle() = default;
  explicit FutureHandle(StatePtr<S> s) noexcept : state_(std::move(s)) {}

  std::exception_ptr exception_until(const Deadline& deadline) const {
    if (!state_->wait(deadline)) throw TimeoutError();
    if (state_->cancelled()) throw CancelledError();
    return state_->stored_exception();
  }
  void wait_for_outcome(const Deadline& deadline) const {
    if (!state_->wait(deadline)) throw TimeoutError();
    if (state_->cancelled()) throw CancelledError();
    if (state_->stored_exception()) std::rethrow_exception(state_->stored_exception());
  }

  StatePtr<S> state_;
};

template <class T, class F>
auto then_impl(const Future<T>& f, F&& fn);
}  // namespace detail

template <class T>
class Future : public detail::FutureHandle<detail::FutureState<T>> {
  using Base = detail::FutureHandle<detail::FutureState<T>>;
  static_assert(!std::is_reference_v<T>, "Future<T&> is not supported; use a pointer or value");

 public:
  using value_type = T;

  // A new pending future, to be completed with set_result()/set_exception() (as Python's
  // Future() for executors and tests). Allocates its state.
  Future() : Base(detail::StatePtr<detail::FutureState<T>>(new detail::FutureState<T>)) {}
  // Wraps an existing state (used by executors).
  explicit Future(detail::StatePtr<detail::FutureState<T>> state) noexcept
      : Base(std::move(state)) {}

  // Blocks until done; returns the value or rethrows the task's exception with its type.
  // CancelledError if cancelled.
  typename detail::result_ref<T>::type result() const {
    this->wait_for_outcome(std::nullopt);
    if constexpr (!std::is_void_v<T>) return this->state_->value();
  }
  // As result(), but throws TimeoutError once `timeout` has passed.
  template <class Rep, class Period>
  typename detail::result_ref<T>::type result(std::chrono::duration<Rep, Period> timeout) const {
    this->wait_for_outcome(detail::deadline_after(timeout));
    if constexpr (!std::is_void_v<T>) return this->state_->value();
  }

  // Completes the future with a value; InvalidStateError if it is already done.
  template <class... A>
  void set_result(A&&... value) const {
    this->state_->set_value(std::forward<A>(value)...);
  }

  // Calls fn(const Future<T>&) when the future is done (at once if it already is).
  template <class F>
  void add_done_callback(F&& fn) const {
    static_assert(std::is_invocable_v<std::decay_t<F>&, const Future<T>&>,
                  "a done-callback is called as fn(const concur::Future<T>&)");
    // The callback holds the state by raw pointer and makes its handle when it runs: a
    // handle stored in the callback would keep the state alive through its own callback
    // list, so a future dropped while pending (and everything its callbacks own) would leak.
    // Whoever runs the callbacks holds a reference meanwhile (they complete the future
    // through a handle or a queued task reference).
    auto* s = this->state();
    detail::SharedState::Callback cb([s, fn = std::forward<F>(fn)]() mutable {
      const Future self{detail::StatePtr<detail::FutureState<T>>(s)};
      fn(self);
    });
    if (!this->state_->add_callback(cb)) fn_now(cb);
  }

  // A future for fn(value) that starts when this one finishes, in the completing thread.
  // fn may take the value (or nothing, for Future<void>); if fn returns a Future, the
  // result is flattened. An exception or cancellation of this future propagates to the
  // new one without calling fn.
  template <class F>
  auto then(F&& fn) const {
    return detail::then_impl(*this, std::forward<F>(fn));
  }

  // co_await: suspends until done, resumes in the completing thread (the async layer
  // resumes on the coroutine's own executor instead), and yields a copy of the value.
  auto operator co_await() const noexcept {
    struct Awaiter {
      Future f;
      bool await_ready() const noexcept { return f.done(); }
      bool await_suspend(std::coroutine_handle<> h) {
        detail::SharedState::Callback cb([h]() mutable { h.resume(); });
        return f.state()->add_callback(cb);  // false: already done, do not suspend
      }
      T await_resume() const {
        if constexpr (std::is_void_v<T>) f.result();
        else return f.result();
      }
    };
    return Awaiter{*this};
  }

 private:
  static void fn_now(detail::SharedState::Callback& cb) {
    try {
      cb();
    } catch (...) {
      detail::report_callback_exception(std::current_exception());
    }
  }
};

// A type-erased future: any Future<T> converts to it, so futures of different result
// types (and from different executors) can be waited on together.
class AnyFuture : public detail::FutureHandle<detail::SharedState> {
  using Base = detail::FutureHandle<detail::SharedState>;

 public:
  template <class T>
  AnyFuture(const Future<T>& f) noexcept  // NOLINT(google-explicit-constructor)
      : Base(detail::StatePtr<detail::SharedState>(f.state())) {}
  explicit AnyFuture(detail::StatePtr<detail::SharedState> s) noexcept : Base(std::move(s)) {}

  // Blocks until done; rethrows the task's exception; CancelledError if cancelled.
  void result() const { this->wait_for_outcome(std::nullopt); }
  template <class Rep, class Period>
  void result(std::chrono::duration<Rep, Period> timeout) const {
    this->wait_for_outcome(detail::deadline_after(timeout));
  }

  // Back to the typed future; InvalidStateError if T is not its result type.
  template <class T>
  Future<T> as() const {
    auto* typed = dynamic_cast<detail::FutureState<T>*>(state());
    if (!typed) throw InvalidStateError("AnyFuture::as<T>(): the future holds another type");
    return Future<T>(detail::StatePtr<detail::FutureState<T>>(typed));
  }

  // Calls fn(const AnyFuture&) when done (at once if it already is).
  template <class F>
  void add_done_callback(F&& fn) const {
    // Raw pointer, handle made at call time: see Future<T>::add_done_callback.
    auto* s = state();
    detail::SharedState::Callback cb([s, fn = std::forward<F>(fn)]() mutable {
      const AnyFuture self{detail::StatePtr<detail::SharedState>(s)};
      fn(self);
    });
    if (!state()->add_callback(cb)) {
      try {
        cb();
      } catch (...) {
        detail::report_callback_exception(std::current_exception());
      }
    }
  }
};

namespace detail {

template <class T>
struct unwrap_future {
  using type = T;
};
template <class T>
struct unwrap_future<Future<T>> {
  using type = T;
};

template <class T, class F>
auto then_result_type() {
  if constexpr (std::is_void_v<T>)
    return std::type_identity<std::invoke_result_t<F&>>{};
  else
    return std::type_identity<std::invoke_result_t<F&, const T&>>{};
}

// Completes `out` with the outcome of `in`.
template <class U>
void forward_outcome(const Future<U>& in, const Future<U>& out) {
  auto* s = in.state();
  if (s->cancelled()) {
    out.state()->cancel();
  } else if (s->stored_exception()) {
    out.state()->try_set_exception(s->stored_exception());
  } else if (out.state()->try_begin_complete()) {
    if constexpr (std::is_void_v<U>) out.state()->store_value();
    else out.state()->store_value(s->value());
    out.state()->end_complete();
  }
}

template <class T, class F>
auto then_impl(const Future<T>& f, F&& fn) {
  using Fn = std::decay_t<F>;
  using R = typename decltype(then_result_type<T, Fn>())::type;
  using V = typename unwrap_future<R>::type;
  Future<V> out;
  f.add_done_callback([out, fn = Fn(std::forward<F>(fn))](const Future<T>& in) mutable {
    auto* s = in.state();
    if (s->cancelled()) {
      out.state()->cancel();
      return;
    }
    if (s->stored_exception()) {
      out.state()->try_set_exception(s->stored_exception());
      return;
    }
    try {
      if constexpr (is_future<R>::value) {
        R inner = [&] {
          if constexpr (std::is_void_v<T>) return fn();
          else return fn(s->value());
        }();
        inner.add_done_callback([out](const R& done) { forward_outcome(done, out); });
      } else if constexpr (std::is_void_v<R>) {
        if constexpr (std::is_void_v<T>) fn();
        else fn(s->value());
        if (out.state()->try_begin_complete()) {
          out.state()->store_value();
          out.state()->end_complete();
        }
      } else {
        R value = [&] {
          if constexpr (std::is_void_v<T>) return fn();
          else return fn(s->value());
        }();
        if (out.state()->try_begin_complete()) {
          out.state()->store_value(std::move(value));
          out.state()->end_complete();
        }
      }
    } catch (...) {
      out.state()->try_set_exception(std::current_exception());
    }
  });
  return out;
}

}  // namespace detail
}  // namespace concur

template <class T>
struct std::hash<concur::Future<T>> {
  std::size_t operator()(const concur::Future<T>& f) const noexcept {
    return std::hash<const void*>{}(f.state());
  }
};
template <>
struct std::hash<concur::AnyFuture> {
  std::size_t operator()(const concur::AnyFuture& f) const noexcept {
    return std::hash<const void*>{}(f.state());
  }
};
