// An intrusive FIFO with lock-free producers (one atomic exchange per push, no allocation)
// and a single consumer at a time (Dmitry Vyukov's MPSC queue). Executors put consumers
// behind a mutex: submitters then never contend with workers on a lock, only workers
// contend among themselves, and only while several are looking for work at once.
#pragma once

#include <atomic>

#include "concur/detail/shared_state.hpp"

namespace concur::detail {

class MpscQueue {
 public:
  MpscQueue() noexcept : head_(&stub_), tail_(&stub_) {}
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  // Any thread. Links a chain first->...->last (already linked through next_link).
  void push_chain(QueueLink* first, QueueLink* last) noexcept {
    last->next_link.store(nullptr, std::memory_order_relaxed);
    QueueLink* prev = tail_.exchange(last, std::memory_order_seq_cst);
    prev->next_link.store(first, std::memory_order_release);
  }
  void push(QueueLink* node) noexcept { push_chain(node, node); }

  // One consumer at a time. nullptr when empty, or when a push is half-way (retry later:
  // maybe_nonempty() stays true until it completes).
  QueueLink* pop() noexcept {
    QueueLink* head = head_.load(std::memory_order_relaxed);
    QueueLink* next = head->next_link.load(std::memory_order_acquire);
    if (head == &stub_) {
      if (!next) return nullptr;
      head_.store(next, std::memory_order_relaxed);
      head = next;
      next = next->next_link.load(std::memory_order_acquire);
    }
    if (next) {
      head_.store(next, std::memory_order_relaxed);
      return head;
    }
    if (tail_.load(std::memory_order_acquire) != head) return nullptr;
    push(&stub_);
    next = head->next_link.load(std::memory_order_acquire);
    if (next) {
      head_.store(next, std::memory_order_relaxed);
      return head;
    }
    return nullptr;
  }

  // For pollers: reads only consumer-side lines (head and the node it points to), which a
  // producer writes once per push, instead of the tail every push exchanges; a push caught
  // half-way shows up a moment later.
  bool probably_nonempty() const noexcept {
    QueueLink* head = head_.load(std::memory_order_relaxed);
    return head != &stub_ || head->next_link.load(std::memory_order_acquire) != nullptr;
  }

  // Any thread. False means empty as of a moment ago (seq_cst, so it pairs with a
  // push followed by a check of the sleepers count in the Dekker style).
  bool maybe_nonempty() const noexcept {
    // Empty is exactly "both ends on the stub"; a half-way push has already moved tail_.
    return tail_.load(std::memory_order_seq_cst) != &stub_ ||
           head_.load(std::memory_order_relaxed) != &stub_;
  }

 private:
  alignas(64) std::atomic<QueueLink*> head_;  // consumer side
  alignas(64) std::atomic<QueueLink*> tail_;  // producer side
  alignas(64) QueueLink stub_;
};

}  // namespace concur::detail
