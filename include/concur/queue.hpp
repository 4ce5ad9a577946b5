// concur/queue.hpp: Python's multiprocessing.Queue, SimpleQueue and JoinableQueue, for
// values of one serializable type T, between processes and threads alike.
//
// What it offers and guarantees:
// - Queue<T>(maxsize) with put / put(timeout) / put_nowait, get / get(timeout) /
//   get_nowait, qsize (a snapshot), empty, full, close; SimpleQueue<T> (put, get, empty,
//   close); JoinableQueue<T> (a Queue with task_done and join). Items come out in the
//   order they went in (FIFO across all producers); each is taken by exactly one get.
// - Python's errors: a put that finds no room by its deadline throws concur::Full, a get
//   that finds nothing throws concur::Empty (also when a get(timeout) times out, as
//   Python's queue.Empty; not TimeoutError). task_done() once too often throws
//   concur::TaskDoneError. Using a handle after close() throws InvalidStateError.
// - Values travel through concur's serialization layer (concur/serialize.hpp): T must be
//   serializable. A value that fails to decode throws SerializationError from get(); that
//   message is consumed and the queue stays usable.
// - A queue is a handle: copies, and the copies a concur::Process receives as arguments
//   (under every start method), are the same queue. It lives until the last handle in
//   the last process is gone. A queue handle put into another queue or given to a process
//   pool task is reopened through /proc/<sender>/fd, which needs the sender alive.
// - Speed: the items live in a ring in shared memory (no pipe, no feeder thread, no
//   syscall on the fast path). A waiting get/put spins briefly (QueueOptions::spin) and
//   then sleeps on a futex; an idle queue costs no CPU (a sleeper looks for a peer
//   that died holding the lock after 5 ms, then less and less often, down to once a
//   second; see below).
// - Failure: every operation holds a robust process-shared mutex. A process that dies in
//   the middle of a put or get (even SIGKILLed while holding the lock) leaves the queue
//   consistent: its own half-done put is either entirely there or absent, nobody
//   deadlocks, and other producers' items are never lost. A consumer that dies after
//   taking an item takes that item with it, as in any queue.
// - Differences from Python, and why:
//   * maxsize bounds items; the ring (QueueOptions::capacity, 64 MiB by default) bounds
//     bytes. It is address space, not memory: pages are used as messages need them and a
//     large message's pages are given back once it is read. So "unbounded" (maxsize 0)
//     means a put waits when capacity bytes are queued, where Python's would grow the
//     producer's memory without limit. A single message larger than the capacity throws
//     SerializationError.
//   * put() has finished writing the item to shared memory when it returns, so there is
//     no feeder thread to flush: join_thread() and cancel_join_thread() would have nothing
//     to do and are not provided, and a producer that exits right after put() loses
//     nothing (Python's "joining processes that use queues" pitfall does not exist).
//   * close() closes this handle only (further use throws); other handles carry on.
//   * A get() waiting for producers that all died waits forever, as in Python: give it a
//     timeout when that can happen.
#pragma once

#include <chrono>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "concur/detail/mp_queue.hpp"
#include "concur/errors.hpp"
#include "concur/serialize.hpp"

namespace concur {

// Tuning of a queue (outside the class so `= {}` defaults work with designated
// initializers: Queue<int> q(0, {.capacity = 1 << 30})).
struct QueueOptions {
  // Bytes of the shared ring: the most queued data and the largest single message.
  std::size_t capacity = std::size_t{64} << 20;
  // How long a waiting get/put/join spins before it sleeps.
  std::chrono::nanoseconds spin = detail::kSpinFor;
};

template <class T>
class Queue;
template <class T>
class SimpleQueue;
template <class T>
class JoinableQueue;

namespace detail {

// What every flavor shares: the core handle, the closed flag, typed encode/decode.
template <class T, QueueFlavor F>
class QueueHandle {
  static_assert(serializable<T>,
                "concur: a Queue's element type must be serializable (see concur/serialize.hpp)");
  static_assert(std::is_same_v<decoded_t<T>, T>,
                "concur: a Queue's element type must decode as itself (use std::string / "
                "std::vector / std::array rather than views and C arrays)");

 public:
  using value_type = T;

  // Number of items in the queue right now (others may change it at once; Python's
  // qsize() is approximate for the same reason).
  std::size_t qsize() const {
    check_open();
    return core_.qsize();
  }
  // Whether the queue held no item at the moment of the call.
  bool empty() const {
    check_open();
    return core_.empty();
  }
  // Closes this handle: later calls on it throw InvalidStateError. Other handles, in
  // this process or others, are unaffected. Idempotent.
  void close() noexcept { closed_ = true; }
  // Whether close() was called on this handle.
  bool closed() const noexcept { return closed_; }
  // How long a waiting call spins before it sleeps (shared by every handle).
  void set_spin(std::chrono::nanoseconds spin) {
    check_open();
    core_.set_spin(spin);
  }

  // The untyped core (testing and the codecs).
  const QueueCore& core() const noexcept { return core_; }

 protected:
  QueueHandle(std::size_t maxsize, const QueueOptions& o)
      : core_(QueueCore::create({maxsize, o.capacity, o.spin.count(), F,
                                 type_hash_of(type_name<T>), type_name<T>})) {}
  explicit QueueHandle(QueueCore core) noexcept : core_(std::move(core)) {}

  void check_open() const {
    if (closed_) throw InvalidStateError("concur: the queue handle is closed");
  }
  void put_until(const T& item, const Deadline& deadline) {
    check_open();
    ScratchWriter w;
    encode(w.get(), item);
    if (!core_.put(w.get().bytes(), deadline)) throw Full();
  }
  T get_until(const Deadline& deadline) {
    check_open();
    ScratchBytes b;
    if (!core_.get(b.get(), deadline)) throw Empty();
    return loads<T>(b.get());
  }

  QueueCore core_;
  bool closed_ = false;
};

template <class Q, QueueFlavor F>
struct queue_codec {
  using T = Q;
  static constexpr bool is_family = true, enc = true, dec = true, is_cereal = false;
  static constexpr std::size_t min_size = sizeof(QueueRef), fixed = npos;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = Q;
  static void encode(Writer& w, const Q& q) { concur::detail::encode(w, q.core().export_ref()); }
  static Q decode(Reader& r) {
    QueueRef ref = concur::detail::decode<QueueRef>(r);
    using E = typename Q::value_type;
    return Q(QueueCore::attach(ref, F, type_hash_of(type_name<E>), type_name<E>));
  }
};
template <class E>
struct family_codec<Queue<E>> : queue_codec<Queue<E>, QueueFlavor::queue> {};
template <class E>
struct family_codec<SimpleQueue<E>> : queue_codec<SimpleQueue<E>, QueueFlavor::simple> {};
template <class E>
struct family_codec<JoinableQueue<E>> : queue_codec<JoinableQueue<E>, QueueFlavor::joinable> {};

// Inside a cereal archive (a ProcessSubclass's serialize()), the same codecs.
template <template <class> class Q, class E>
  requires(std::is_same_v<Q<E>, Queue<E>> || std::is_same_v<Q<E>, SimpleQueue<E>> ||
           std::is_same_v<Q<E>, JoinableQueue<E>>)
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const Q<E>& q) {
  codec<Q<E>>::encode(ar.writer(), q);
}
template <template <class> class Q, class E>
  requires(std::is_same_v<Q<E>, Queue<E>> || std::is_same_v<Q<E>, SimpleQueue<E>> ||
           std::is_same_v<Q<E>, JoinableQueue<E>>)
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, Q<E>& q) {
  q = codec<Q<E>>::decode(ar.reader());
}

}  // namespace detail

// multiprocessing.Queue: a FIFO of T between processes and threads, bounded by maxsize
// items (0: by capacity bytes only).
template <class T>
class Queue : public detail::QueueHandle<T, detail::QueueFlavor::queue> {
  using Base = detail::QueueHandle<T, detail::QueueFlavor::queue>;

 public:
  using Options = QueueOptions;

  // A new queue holding at most `maxsize` items (0: no item limit).
  explicit Queue(std::size_t maxsize = 0, QueueOptions options = {}) : Base(maxsize, options) {}

  // Appends item, waiting as long as needed for room.
  void put(const T& item) { this->put_until(item, std::nullopt); }
  // Appends item, waiting at most `timeout` for room; Full when there is none.
  template <class Rep, class Period>
  void put(const T& item, std::chrono::duration<Rep, Period> timeout) {
    this->put_until(item, detail::deadline_in(timeout));
  }
  // Appends item if there is room now; Full otherwise.
  void put_nowait(const T& item) { this->put_until(item, detail::Deadline(detail::kPoll)); }

  // Takes the oldest item, waiting as long as needed.
  T get() { return this->get_until(std::nullopt); }
  // Takes the oldest item, waiting at most `timeout`; Empty when none came.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return this->get_until(detail::deadline_in(timeout));
  }
  // Takes the oldest item if there is one now; Empty otherwise.
  T get_nowait() { return this->get_until(detail::Deadline(detail::kPoll)); }

  // Whether the queue held maxsize items at the moment of the call (never, unbounded).
  bool full() const {
    this->check_open();
    return this->core_.full();
  }
  // The item limit given at creation (0: none).
  std::size_t maxsize() const noexcept { return this->core_.maxsize(); }

 protected:
  explicit Queue(detail::QueueCore core) noexcept : Base(std::move(core)) {}
  friend struct detail::queue_codec<Queue<T>, detail::QueueFlavor::queue>;
};

// multiprocessing.SimpleQueue: an unbounded FIFO with just put, get, empty and close.
template <class T>
class SimpleQueue : public detail::QueueHandle<T, detail::QueueFlavor::simple> {
  using Base = detail::QueueHandle<T, detail::QueueFlavor::simple>;

 public:
  using Options = QueueOptions;

  // A new, empty queue.
  explicit SimpleQueue(QueueOptions options = {}) : Base(0, options) {}

  // Appends item (waits only while `capacity` bytes are queued).
  void put(const T& item) { this->put_until(item, std::nullopt); }
  // Takes the oldest item, waiting as long as needed.
  T get() { return this->get_until(std::nullopt); }

 private:
  explicit SimpleQueue(detail::QueueCore core) noexcept : Base(std::move(core)) {}
  friend struct detail::queue_codec<SimpleQueue<T>, detail::QueueFlavor::simple>;
};

// multiprocessing.JoinableQueue: a Queue that counts unfinished items; consumers call
// task_done() per item processed and join() waits until every item put is done.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  // A new queue holding at most `maxsize` items (0: no item limit).
  explicit JoinableQueue(std::size_t maxsize = 0, QueueOptions options = {})
      : Queue<T>(detail::QueueCore::create({maxsize, options.capacity, options.spin.count(),
                                            detail::QueueFlavor::joinable,
                                            detail::type_hash_of(detail::type_name<T>),
                                            detail::type_name<T>})) {}

  // Marks one item taken by get() as processed; TaskDoneError when every item put is
  // already done.
  void task_done() {
    this->check_open();
    this->core_.task_done();
  }
  // Waits until every item put so far has been marked done.
  void join() {
    this->check_open();
    this->core_.join(std::nullopt);
  }
  // Waits at most `timeout`; true when every item put so far is done.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    this->check_open();
    return this->core_.join(detail::deadline_in(timeout));
  }

 private:
  explicit JoinableQueue(detail::QueueCore core) noexcept : Queue<T>(std::move(core)) {}
  friend struct detail::queue_codec<JoinableQueue<T>, detail::QueueFlavor::joinable>;
};

}  // namespace concur
