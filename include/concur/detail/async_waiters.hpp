// concur/detail/async_waiters.hpp: the parking lot behind every async primitive.
//
// A coroutine that cannot proceed parks a AsyncWaiter in its primitive's list. Whoever makes
// progress possible unlinks it under the primitive's mutex and calls resume(), which
// *posts* the coroutine's completion to the coroutine's own executor: a waiter is never
// resumed inline on the releasing thread. A cancellation-slot hook unlinks a waiter that
// is still parked and resumes it with CancelledError; a waiter already granted is left
// alone (it resumes with what it was given, so nothing is lost). The waiter object stays
// alive until the posted completion runs, so a late cancellation never touches freed
// memory; the posted completion clears the slot before resuming the coroutine.
#pragma once

#include "concur/detail/async_config.hpp"  // before any Asio header

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/execution_context.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <utility>

#include "concur/errors.hpp"

namespace concur::detail {

// Counts posts in progress from foreign threads into one loop. asio::post still touches
// the io_context after the handler is queued (and the loop may already have run it), so
// concur::run waits for this count to drop to zero before it destroys the io_context.
class LoopLife : public asio::execution_context::service {
 public:
  using key_type = LoopLife;
  static inline asio::execution_context::id id;
  explicit LoopLife(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}
  std::atomic<int> inflight{0};

 private:
  void shutdown() override {}
};

// The LoopLife of the loop behind `ex`.
LoopLife& loop_life(const asio::any_io_executor& ex);

// Marks a post from a (possibly foreign) thread as in progress for its lifetime.
class InflightPost {
 public:
  explicit InflightPost(LoopLife* life) noexcept : life_(life) { life_->inflight.fetch_add(1, std::memory_order_acq_rel); }
  ~InflightPost() { life_->inflight.fetch_sub(1, std::memory_order_release); }
  InflightPost(const InflightPost&) = delete;
  InflightPost& operator=(const InflightPost&) = delete;

 private:
  LoopLife* life_;
};

// One parked coroutine. Linked into exactly one AsyncWaitList while it waits.
struct AsyncWaiter {
  AsyncWaiter* prev = nullptr;
  AsyncWaiter* next = nullptr;
  bool linked = false;
  // Caller-owned payload in the suspended coroutine's frame (an item to hand over, or
  // the place to put one); valid until the coroutine resumes.
  void* payload = nullptr;
  // Posts the coroutine's continuation; after this call the waiter belongs to the
  // posted completion.
  virtual void resume(std::exception_ptr error) = 0;
  virtual ~AsyncWaiter() = default;
};

// Intrusive FIFO of waiters; guarded by the owning primitive's mutex.
class AsyncWaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  AsyncWaiter* front() const noexcept { return head_; }

  void push_back(AsyncWaiter* w) noexcept {
    w->prev = tail_;
    w->next = nullptr;
    if (tail_) tail_->next = w; else head_ = w;
    tail_ = w;
    w->linked = true;
    ++size_;
  }
  AsyncWaiter* pop_front() noexcept {
    AsyncWaiter* w = head_;
    if (w) unlink(w);
    return w;
  }
  void unlink(AsyncWaiter* w) noexcept {
    if (w->prev) w->prev->next = w->next; else head_ = w->next;
    if (w->next) w->next->prev = w->prev; else tail_ = w->prev;
    w->prev = w->next = nullptr;
    w->linked = false;
    --size_;
  }

 private:
  AsyncWaiter* head_ = nullptr;
  AsyncWaiter* tail_ = nullptr;
  std::size_t size_ = 0;
};

// AsyncWaiter for a completion handler of signature void(std::exception_ptr).
template <class Handler>
class AsyncWaiterOp final : public AsyncWaiter {
 public:
  using WorkExecutor = decltype(asio::prefer(
      std::declval<asio::associated_executor_t<Handler, asio::any_io_executor>>(),
      asio::execution::outstanding_work.tracked));

  AsyncWaiterOp(Handler&& h, void* payload_ptr)
      : handler_(std::move(h)),
        work_(asio::prefer(asio::get_associated_executor(handler_, asio::any_io_executor()),
                           asio::execution::outstanding_work.tracked)),
        slot_(asio::get_associated_cancellation_slot(handler_)),
        life_(&loop_life(asio::get_associated_executor(handler_, asio::any_io_executor()))) {
    payload = payload_ptr;
  }

  asio::cancellation_slot& slot() noexcept { return slot_; }

  void resume(std::exception_ptr error) override {
    InflightPost guard(life_);
    auto ex = work_;
    asio::post(ex, [self = std::unique_ptr<AsyncWaiterOp>(this), error]() mutable {
      if (self->slot_.is_connected()) self->slot_.clear();
      Handler h = std::move(self->handler_);
      self.reset();
      std::move(h)(error);
    });
  }

 private:
  Handler handler_;
  WorkExecutor work_;
  asio::cancellation_slot slot_;
  LoopLife* life_;
};

// Mixin giving a primitive a mutex, and `park(list, try_grant)`: complete at once when
// try_grant() (called under the mutex) succeeds, else wait in `list` until resumed.
class AsyncParking {
 protected:
  mutable std::mutex mutex_;

  // Unlinks `w` if it is still parked in `list` and resumes it with CancelledError.
  void cancel_parked(AsyncWaitList& list, AsyncWaiter* w) {
    {
      std::lock_guard lock(mutex_);
      if (!w->linked) return;  // already granted: it resumes with what it was given
      list.unlink(w);
    }
    w->resume(std::make_exception_ptr(CancelledError("wait was cancelled")));
  }

  template <class TryGrant>
  asio::awaitable<void> park(AsyncWaitList& list, TryGrant try_grant, void* payload = nullptr,
                             bool cancellable = true) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(
        [this, &list, payload, cancellable](auto handler, TryGrant grant) {
          using H = decltype(handler);
          auto* op = new AsyncWaiterOp<H>(std::move(handler), payload);
          // The hook goes in before the waiter is visible to other threads, which may
          // grant and resume it at once.
          if (cancellable && op->slot().is_connected()) {
            op->slot().template emplace<CancelHook>(this, &list, op);
          } else if (op->slot().is_connected()) {
            op->slot().clear();
          }
          bool granted;
          {
            std::lock_guard lock(mutex_);
            granted = grant();
            if (!granted) list.push_back(op);
          }
          if (granted) op->resume(nullptr);
        },
        asio::use_awaitable, std::move(try_grant));
  }

 private:
  struct CancelHook {
    AsyncParking* owner;
    AsyncWaitList* list;
    AsyncWaiter* waiter;
    CancelHook(AsyncParking* o, AsyncWaitList* l, AsyncWaiter* w) : owner(o), list(l), waiter(w) {}
    void operator()(asio::cancellation_type type) {
      if (type != asio::cancellation_type::none) owner->cancel_parked(*list, waiter);
    }
  };
};

}  // namespace concur::detail
