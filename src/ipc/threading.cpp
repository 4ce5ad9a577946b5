// concur::Timer.
#include "concur/threading.hpp"

#include <stdexcept>

#include "concur/detail/futex.hpp"

namespace concur {

struct Timer::State {
  std::mutex m;
  std::condition_variable cv;
  std::chrono::nanoseconds interval;
  std::function<void()> fn;
  std::thread thread;
  std::exception_ptr error;
  bool started = false;
  bool fired = false;             // the function has started; cancel() is too late
  bool cancel_requested = false;  // cancel() came before the function started
  bool done = false;
};

Timer::Timer(std::chrono::nanoseconds interval, std::function<void()> fn)
    : state_(std::make_shared<State>()) {
  state_->interval = interval;
  state_->fn = std::move(fn);
}

Timer& Timer::operator=(Timer&& other) noexcept {
  if (this != &other) {
    stop();
    state_ = std::move(other.state_);
  }
  return *this;
}

Timer::~Timer() { stop(); }

void Timer::stop() noexcept {
  if (!state_) return;
  cancel();
  std::thread t;
  {
    std::lock_guard lk(state_->m);
    t = std::move(state_->thread);
  }
  if (t.joinable()) {
    // A function that destroys its own Timer must not join itself; the thread holds
    // the state alive until it ends.
    if (t.get_id() == std::this_thread::get_id())
      t.detach();
    else
      t.join();
  }
}

void Timer::start() {
  if (!state_) throw std::logic_error("Timer::start(): moved-from timer");
  std::lock_guard lk(state_->m);
  if (state_->started) throw std::logic_error("Timer::start(): threads can only be started once");
  state_->started = true;
  const auto deadline = detail::deadline_after(state_->interval);
  state_->thread = std::thread([st = state_, deadline] {
    {
      std::unique_lock wait_lk(st->m);
      auto stop_waiting = [&] { return st->cancel_requested; };
      if (deadline == detail::Clock::time_point::max())
        st->cv.wait(wait_lk, stop_waiting);
      else
        st->cv.wait_until(wait_lk, deadline, stop_waiting);
      if (st->cancel_requested) {
        st->done = true;
        st->cv.notify_all();
        return;
      }
      st->fired = true;
    }
    std::exception_ptr error;
    try {
      st->fn();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard end_lk(st->m);
    st->error = error;
    st->done = true;
    st->cv.notify_all();
  });
}

void Timer::cancel() {
  if (!state_) return;
  std::lock_guard lk(state_->m);
  if (state_->fired || state_->done) return;
  state_->cancel_requested = true;
  state_->cv.notify_all();
}

void Timer::join() {
  if (!state_ || !state_->started)
    throw std::logic_error("Timer::join(): cannot join a timer before it is started");
  std::thread t;
  {
    std::lock_guard lk(state_->m);
    t = std::move(state_->thread);
  }
  if (t.joinable()) {
    if (t.get_id() == std::this_thread::get_id())
      throw std::logic_error("Timer::join(): a timer cannot join itself");
    t.join();
  }
  std::exception_ptr error;
  {
    std::unique_lock lk(state_->m);
    // Another thread may have taken the std::thread to join it; wait for the end anyway.
    state_->cv.wait(lk, [&] { return state_->done; });
    error = std::exchange(state_->error, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

bool Timer::join_for(std::chrono::nanoseconds timeout) {
  if (!state_ || !state_->started)
    throw std::logic_error("Timer::join(): cannot join a timer before it is started");
  {
    std::unique_lock lk(state_->m);
    const auto deadline = detail::deadline_after(timeout);
    auto finished = [&] { return state_->done; };
    if (deadline == detail::Clock::time_point::max())
      state_->cv.wait(lk, finished);
    else if (!state_->cv.wait_until(lk, deadline, finished))
      return false;
  }
  join();
  return true;
}

bool Timer::is_alive() const {
  if (!state_) return false;
  std::lock_guard lk(state_->m);
  return state_->started && !state_->done;
}

bool Timer::cancelled() const {
  if (!state_) return false;
  std::lock_guard lk(state_->m);
  return state_->cancel_requested;
}

}  // namespace concur
