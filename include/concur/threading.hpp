// concur/threading.hpp: the parts of Python's `threading` that C++ lacks, and where to find
// the rest.
//
// concur::Timer is Python's threading.Timer: run a function once after an interval on its
// own thread, unless cancel() comes first. cancel() returns at once and, before expiry,
// guarantees the function never runs; the destructor cancels and joins, so a Timer never
// outlives its scope. An exception thrown by the function is rethrown by join().
//
// Python's threading names and what to use in C++ (concur does not re-wrap std):
//   threading.Thread(target=f, args=a)  std::jthread t(f, a...)  (starts at construction,
//                                       joins on destruction; std::thread to detach:
//                                       Python's daemon=True)
//   t.join() / t.join(timeout)          t.join() / no timed join: wait on a concur::Event
//   threading.Lock                      std::mutex; acquire(timeout=) -> std::timed_mutex
//   `with lock:`                        std::lock_guard / std::scoped_lock (several at once,
//                                       deadlock-free: the fix for the seed's AB/BA exercise)
//   threading.RLock                     std::recursive_mutex / std::recursive_timed_mutex
//   threading.Condition                 std::condition_variable + std::unique_lock<std::mutex>
//                                       (condition_variable_any for other locks):
//     wait() / wait(timeout)            cv.wait(lk) / cv.wait_for(lk, d) == no_timeout
//     wait_for(pred, timeout)           cv.wait_for(lk, d, pred)  (beware the name clash:
//                                       Python's wait_for takes a predicate)
//     notify() / notify(n)/notify_all() cv.notify_one() / n x notify_one() / notify_all()
//   threading.Semaphore                 std::counting_semaphore<> (acquire, try_acquire,
//                                       try_acquire_for, release(n))
//   threading.BoundedSemaphore          concur::BoundedSemaphore (synchronize.hpp): std's
//                                       release past the maximum is undefined behaviour
//   threading.Event                     concur::Event (synchronize.hpp): std has no
//                                       timed, clearable flag (atomic::wait has no timeout)
//   threading.Barrier                   std::barrier (completion function = action); for
//                                       timeouts, abort(), reset() or the arrival index use
//                                       concur::Barrier (synchronize.hpp)
//   threading.Timer                     concur::Timer (here)
//   threading.local                     thread_local
//   threading.get_ident()               std::this_thread::get_id() (gettid() for the
//                                       kernel id, Python's get_native_id())
//   time.sleep(s)                       std::this_thread::sleep_for(d)
//   os.cpu_count()/process_cpu_count()  concur::cpu_count() (system.hpp)
// The concur primitives in synchronize.hpp are process-shared (each holds a descriptor and
// a page of shared memory); for thread-only code that needs thousands of them, prefer std.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

namespace concur {

// threading.Timer: calls function(args...) once, `interval` after start(), on a thread of
// its own, unless cancel() is called first. Move-only.
class Timer {
 public:
  // A timer that will call function(args...) `interval` after start(). The function and
  // arguments are stored by value (move-only ones too).
  template <class Rep, class Period, class F, class... Args>
    requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
  Timer(std::chrono::duration<Rep, Period> interval, F&& function, Args&&... args)
      : Timer(std::chrono::duration_cast<std::chrono::nanoseconds>(interval),
              bind(std::forward<F>(function), std::forward<Args>(args)...)) {}

  // Takes over the timer (running or not); `other` becomes empty.
  Timer(Timer&&) noexcept = default;
  // Cancels and joins the timer being replaced first.
  Timer& operator=(Timer&& other) noexcept;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  // Cancels and joins (the exception of a function that ran and threw is dropped).
  ~Timer();

  // Starts the countdown on a new thread; std::logic_error if already started.
  void start();
  // Stops the timer if it is still waiting: the function will not run. No effect once
  // the function has started. Returns without waiting for the thread.
  void cancel();
  // Waits for the thread to finish; rethrows the function's exception, if it threw.
  // std::logic_error before start().
  void join();
  // Waits at most `timeout` for the thread to finish; true if it did (then as join()).
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  // Whether the timer thread has started and not yet finished (waiting or running).
  bool is_alive() const;
  // Whether cancel() stopped it before the function ran.
  bool cancelled() const;

 private:
  struct State;
  Timer(std::chrono::nanoseconds interval, std::function<void()> fn);
  bool join_for(std::chrono::nanoseconds timeout);
  void stop() noexcept;

  // std::function needs a copyable target; sharing the bound call keeps move-only
  // functions and arguments usable.
  template <class F, class... Args>
  static std::function<void()> bind(F&& f, Args&&... args) {
    auto call = std::make_shared<std::tuple<std::decay_t<F>, std::decay_t<Args>...>>(
        std::forward<F>(f), std::forward<Args>(args)...);
    return [call] { std::apply([](auto& fn, auto&... a) { std::invoke(fn, a...); }, *call); };
  }

  std::shared_ptr<State> state_;
};

}  // namespace concur
