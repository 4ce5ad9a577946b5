// The shared ring under concur::Queue (detail/mp_queue.hpp).
//
// Layout: one memfd segment; page 0 holds QueueShared, the ring follows. The ring holds
// 8-byte aligned records [u32 length][u32 kind][payload][padding]; a WRAP record (or a
// tail too short for a header) sends the reader back to offset 0. Occupied bytes are
// [rpos, wpos) when not wrapped, [rpos, capacity) + [0, wpos) when wrapped; `count`
// tells an empty ring from a full one. An emptied ring restarts at 0, and a writer past
// `hot` wraps as soon as the start is free, so a queue of small messages keeps touching
// the same few pages; pages beyond `hot` that a large message used are punched out once
// it is read, so a burst does not pin memory. The ring's file is sparse: capacity is
// address space, not memory.
//
// Failure model. Every operation runs under a robust process-shared mutex. A holder that
// dies leaves the mutex to the next acquirer with EOWNERDEAD; what it was doing is
// recovered from a journal: an operation writes its record first (invisible beyond wpos),
// then the new (rpos, wpos, count, unfinished) into the journal, marks the journal valid,
// applies it, and clears the mark. Recovery re-applies a valid journal (idempotent:
// absolute values) and otherwise keeps the state as it was, so a put that died before its
// journal was valid never happened, and one that died after it happened completely;
// others' messages are never touched. Sleepers wake up on their own now and then (after
// 5 ms, then at doubling intervals up to once a second): the sequence numbers they sleep
// on move under the mutex, so a wake-up lost to a process that died right after its
// operation is noticed then, and a holder that died with the mutex is found by a
// trylock, which repairs and wakes everyone.
#include "concur/detail/mp_queue.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "concur/errors.hpp"

namespace concur::detail {

namespace {

constexpr std::uint32_t kQueueMagic = 0x75716e63;  // "cnqu"
constexpr std::uint32_t kQueueVersion = 1;
constexpr std::uint32_t kRecData = 0x41544144;     // "DATA"
constexpr std::uint32_t kRecWrap = 0x50415257;     // "WRAP"
constexpr std::size_t kRecHeader = 8;
constexpr std::size_t kRingOffset = 4096;
constexpr std::size_t kHotBytes = std::size_t{1} << 20;
// A sleeper looks for a dead holder after kFirstCheck, then at doubling intervals up to
// kDeadHolderCheck: a death soon after a sleep starts (the usual case: the peer died in
// the operation the sleeper is waiting for) is noticed within about the time already
// slept, and a long idle wait costs one wake-up a second.
constexpr std::chrono::milliseconds kFirstCheck{5};
constexpr std::chrono::milliseconds kDeadHolderCheck{1000};
constexpr std::chrono::nanoseconds kLockSpin{10'000};

constexpr std::size_t round8(std::size_t n) noexcept { return (n + 7) & ~std::size_t{7}; }

}  // namespace

struct QueueJournal {
  std::atomic<std::uint32_t> valid;
  std::uint32_t reserved;
  std::atomic<std::uint64_t> rpos, wpos, count, unfinished;
};

struct alignas(64) QueueShared {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t flavor;
  std::uint32_t reserved;
  std::uint64_t type_hash;
  std::uint64_t capacity;
  std::uint64_t hot;
  std::uint64_t maxsize;
  std::atomic<std::int64_t> spin_ns;
  alignas(64) pthread_mutex_t mutex;
  // Guarded by the mutex; atomic so that waiters may peek without it.
  std::atomic<std::uint64_t> rpos, wpos, count, unfinished;
  std::atomic<std::uint64_t> recoveries;
  QueueJournal journal;
  // Doorbells: a sequence number bumped by each event, and how many sleep on it.
  alignas(64) std::atomic<std::uint32_t> put_seq;
  std::atomic<std::uint32_t> getters_asleep;
  alignas(64) std::atomic<std::uint32_t> get_seq;
  std::atomic<std::uint32_t> putters_asleep;
  alignas(64) std::atomic<std::uint32_t> done_seq;
  std::atomic<std::uint32_t> joiners_asleep;
};
static_assert(sizeof(QueueShared) <= kRingOffset);

namespace {

std::byte* ring_of(const SegmentPtr& seg) noexcept { return seg->base() + kRingOffset; }

struct State {
  std::uint64_t rpos, wpos, count, unfinished;
};

State load_state(const QueueShared& sh) noexcept {
  return {sh.rpos.load(std::memory_order_relaxed), sh.wpos.load(std::memory_order_relaxed),
          sh.count.load(std::memory_order_relaxed), sh.unfinished.load(std::memory_order_relaxed)};
}

void apply(QueueShared& sh, const State& s) noexcept {
  sh.rpos.store(s.rpos, std::memory_order_release);
  sh.wpos.store(s.wpos, std::memory_order_release);
  sh.count.store(s.count, std::memory_order_release);
  sh.unfinished.store(s.unfinished, std::memory_order_release);
}

// The journal protocol of the note at the top. `die_after_journal` (the tests'
// put_and_die / get_and_die) exits once the journal is valid and before it is applied: the
// one point where recovery must finish the operation, which the tests therefore reach
// through this same code rather than a copy of it.
void commit(QueueShared& sh, const State& s, bool die_after_journal = false) noexcept {
  QueueJournal& j = sh.journal;
  j.rpos.store(s.rpos, std::memory_order_relaxed);
  j.wpos.store(s.wpos, std::memory_order_relaxed);
  j.count.store(s.count, std::memory_order_relaxed);
  j.unfinished.store(s.unfinished, std::memory_order_relaxed);
  j.valid.store(1, std::memory_order_release);
  if (die_after_journal) _exit(99);
  apply(sh, s);
  j.valid.store(0, std::memory_order_release);
}

void wake_all(QueueShared& sh) noexcept {
  sh.put_seq.fetch_add(1, std::memory_order_seq_cst);
  sh.get_seq.fetch_add(1, std::memory_order_seq_cst);
  sh.done_seq.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(&sh.put_seq, INT_MAX, true);
  futex_wake(&sh.get_seq, INT_MAX, true);
  futex_wake(&sh.done_seq, INT_MAX, true);
}

// Repairs what a holder that died left (we hold the mutex, state EOWNERDEAD).
void recover(QueueShared& sh) noexcept {
  QueueJournal& j = sh.journal;
  if (j.valid.load(std::memory_order_acquire)) {
    apply(sh, {j.rpos.load(std::memory_order_relaxed), j.wpos.load(std::memory_order_relaxed),
               j.count.load(std::memory_order_relaxed),
               j.unfinished.load(std::memory_order_relaxed)});
    j.valid.store(0, std::memory_order_release);
  }
  State s = load_state(sh);
  bool sane = s.rpos <= sh.capacity && s.wpos <= sh.capacity && s.rpos % 8 == 0 &&
              s.wpos % 8 == 0 && (s.count != 0 || (s.rpos == 0 && s.wpos == 0));
  if (!sane) apply(sh, {0, 0, 0, s.unfinished});  // cannot happen; never loop on garbage
  sh.recoveries.fetch_add(1, std::memory_order_relaxed);
  wake_all(sh);
}

// Takes the mutex (spinning briefly first: critical sections are a memcpy long).
void lock(QueueShared& sh) {
  int rc = pthread_mutex_trylock(&sh.mutex);
  if (rc == EBUSY) {
    spin_until([&] { return (rc = pthread_mutex_trylock(&sh.mutex)) != EBUSY; }, kLockSpin);
    if (rc == EBUSY) rc = pthread_mutex_lock(&sh.mutex);
  }
  if (rc == EOWNERDEAD) {
    recover(sh);
    pthread_mutex_consistent(&sh.mutex);
    return;
  }
  if (rc != 0) throw OSError("concur: Queue lock: " + std::string(std::strerror(rc)), rc);
}

class Guard {
 public:
  explicit Guard(QueueShared& sh) : sh_(sh) { lock(sh_); }
  ~Guard() { pthread_mutex_unlock(&sh_.mutex); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  QueueShared& sh_;
};

// A sleeper's periodic look for a holder that died (see the note at the top).
void probe_dead_holder(QueueShared& sh) noexcept {
  int rc = pthread_mutex_trylock(&sh.mutex);
  if (rc == EOWNERDEAD) {
    recover(sh);
    pthread_mutex_consistent(&sh.mutex);
    pthread_mutex_unlock(&sh.mutex);
  } else if (rc == 0) {
    pthread_mutex_unlock(&sh.mutex);
  }
}

// Waits until `seq` moves away from `seen` or the deadline passes; false on timeout.
bool wait_seq(QueueShared& sh, std::atomic<std::uint32_t>& seq,
              std::atomic<std::uint32_t>& asleep, std::uint32_t seen, const Deadline& deadline) {
  auto moved = [&] { return seq.load(std::memory_order_acquire) != seen; };
  if (moved()) return true;
  if (expired(deadline)) return false;
  if (spin_until(moved, std::chrono::nanoseconds(sh.spin_ns.load(std::memory_order_relaxed))))
    return true;
  // Before the first sleep: a holder that died may be why nothing moves.
  probe_dead_holder(sh);
  std::chrono::nanoseconds interval = kFirstCheck;
  for (;;) {
    if (expired(deadline)) return moved();
    auto check_at = Clock::now() + interval;
    interval = std::min<std::chrono::nanoseconds>(interval * 2, kDeadHolderCheck);
    Deadline d = (deadline && *deadline < check_at) ? deadline : Deadline(check_at);
    asleep.fetch_add(1, std::memory_order_seq_cst);
    if (!moved()) futex_wait(&seq, seen, d, /*shared=*/true);
    asleep.fetch_sub(1, std::memory_order_seq_cst);
    if (moved()) return true;
    if (Clock::now() >= check_at) probe_dead_holder(sh);
  }
}

void check_flavor_and_type(const QueueShared& sh, QueueFlavor want, std::uint64_t type_hash,
                           std::string_view type_name) {
  auto have = static_cast<QueueFlavor>(sh.flavor);
  bool ok = have == want || (want == QueueFlavor::queue && have == QueueFlavor::joinable);
  auto name = [](QueueFlavor f) {
    switch (f) {
      case QueueFlavor::queue: return "Queue";
      case QueueFlavor::simple: return "SimpleQueue";
      case QueueFlavor::joinable: return "JoinableQueue";
    }
    return "unknown queue";
  };
  if (!ok)
    throw SerializationError(std::string("concur: a ") + name(have) + " cannot be received as a " +
                             name(want));
  if (sh.type_hash != type_hash)
    throw SerializationError("concur: a queue received as a queue of " + std::string(type_name) +
                             " holds another element type");
}

}  // namespace

// ---------------------------------------------------------------- creation
QueueCore QueueCore::create(const QueueConfig& c) {
  long page = ::sysconf(_SC_PAGESIZE);
  std::size_t ps = page > 0 ? static_cast<std::size_t>(page) : 4096;
  if (c.capacity < 64)
    throw std::invalid_argument("concur: a queue's capacity must be at least 64 bytes");
  std::size_t capacity = (c.capacity + ps - 1) / ps * ps;
  SegmentPtr seg = Segment::create(kRingOffset + capacity, "concur-queue");
  auto* sh = new (seg->base()) QueueShared;
  sh->magic = kQueueMagic;
  sh->version = kQueueVersion;
  sh->flavor = static_cast<std::uint32_t>(c.flavor);
  sh->type_hash = c.type_hash;
  sh->capacity = capacity;
  sh->hot = std::min(capacity, kHotBytes);
  sh->maxsize = c.maxsize;
  sh->spin_ns.store(c.spin_ns, std::memory_order_relaxed);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(&sh->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw OSError("concur: Queue mutex: " + std::string(std::strerror(rc)), rc);
  apply(*sh, {0, 0, 0, 0});
  return QueueCore(std::move(seg), sh);
}

QueueCore QueueCore::attach(const QueueRef& ref, QueueFlavor flavor, std::uint64_t type_hash,
                            std::string_view type_name) {
  ShmPart part;
  part.dev = ref.fd.dev;
  part.ino = ref.fd.ino;
  int received = handoff::importer() ? handoff::importer()->peek(ref.fd) : -1;
  if (received >= 0) {
    part.fd = received;
    part.pid = ::getpid();
  } else {
    part.fd = ref.fd.fd;
    part.pid = ref.fd.pid;
  }
  SegmentPtr seg = Segment::open(part);
  if (seg->size() < kRingOffset + 64)
    throw SerializationError("concur: the segment received as a queue is too small");
  auto* sh = reinterpret_cast<QueueShared*>(seg->base());
  if (sh->magic != kQueueMagic || sh->version != kQueueVersion ||
      sh->capacity + kRingOffset > seg->size())
    throw SerializationError("concur: the segment received as a queue is not a queue");
  check_flavor_and_type(*sh, flavor, type_hash, type_name);
  return QueueCore(std::move(seg), sh);
}

QueueRef QueueCore::export_ref() const {
  QueueRef r;
  r.fd = handoff::export_fd(seg_->fd(), /*must_pass=*/false);
  r.type_hash = sh_->type_hash;
  r.flavor = sh_->flavor;
  return r;
}

// ---------------------------------------------------------------- put / get
namespace {

// Where a record of `need` bytes goes, or npos; `wrap_at` receives the offset of a WRAP
// marker to write first (npos: none).
std::size_t place(const QueueShared& sh, const State& s, std::size_t need, std::size_t& wrap_at) {
  constexpr std::size_t npos = static_cast<std::size_t>(-1);
  wrap_at = npos;
  const std::size_t cap = sh.capacity;
  if (s.count == 0) return need <= cap ? 0 : npos;
  bool wrapped = s.wpos < s.rpos || s.wpos == s.rpos;
  if (wrapped) return (s.rpos - s.wpos >= need) ? s.wpos : npos;
  std::size_t tail = cap - s.wpos;
  bool prefer_wrap = s.wpos >= sh.hot;
  if (!prefer_wrap && need <= tail) return s.wpos;
  if (need <= s.rpos) {
    if (tail >= kRecHeader) wrap_at = s.wpos;
    return 0;
  }
  if (need <= tail) return s.wpos;
  return npos;
}

// Writes a record of `need` bytes at `pos` (and the WRAP marker at `wrap_at` first, unless
// npos), still invisible, and returns the state that publishes it. Shared by put() and
// the tests' put_and_die(), so that the death tests write what put() writes.
State write_record(const QueueShared& sh, std::byte* ring, const State& s, std::size_t pos,
                   std::size_t wrap_at, std::size_t need, std::span<const std::byte> message) {
  if (wrap_at != static_cast<std::size_t>(-1)) {
    std::uint32_t w[2] = {0, kRecWrap};
    std::memcpy(ring + wrap_at, w, sizeof w);
  }
  std::uint32_t h[2] = {static_cast<std::uint32_t>(message.size()), kRecData};
  std::memcpy(ring + pos, h, sizeof h);
  copy_bytes(ring + pos + kRecHeader, message.data(), message.size());
  State n = s;
  if (s.count == 0) n.rpos = 0;
  n.wpos = pos + need;
  n.count = s.count + 1;
  if (sh.flavor == static_cast<std::uint32_t>(QueueFlavor::joinable)) ++n.unfinished;
  return n;
}

// Where the oldest record starts (past a WRAP marker or a tail too short for a header;
// s.count != 0), with its header in `h`. Shared by get() and the tests' get_and_die().
std::size_t find_record(const QueueShared& sh, const std::byte* ring, const State& s,
                        std::uint32_t (&h)[2]) noexcept {
  const std::size_t cap = sh.capacity;
  std::size_t pos = s.rpos;
  h[0] = h[1] = 0;
  if (cap - pos >= kRecHeader) std::memcpy(h, ring + pos, sizeof h);
  if (cap - pos < kRecHeader || h[1] == kRecWrap) {
    pos = 0;
    std::memcpy(h, ring, sizeof h);
  }
  return pos;
}

// The state once the record of `need` bytes at `pos` is taken: an emptied ring restarts at 0.
State after_take(const State& s, std::size_t pos, std::size_t need) noexcept {
  State n = s;
  n.rpos = pos + need;
  n.count = s.count - 1;
  if (n.count == 0) n.rpos = n.wpos = 0;
  return n;
}

}  // namespace

bool QueueCore::put(std::span<const std::byte> message, const Deadline& deadline) {
  QueueShared& sh = *sh_;
  const std::size_t need = kRecHeader + round8(message.size());
  if (need > sh.capacity || message.size() > 0xffffffffu)
    throw SerializationError("concur: a message of " + std::to_string(message.size()) +
                             " bytes does not fit a queue of capacity " +
                             std::to_string(sh.capacity) +
                             " bytes (QueueOptions::capacity raises it)");
  std::byte* ring = ring_of(seg_);
  for (;;) {
    std::uint32_t seen = 0;
    bool done = false, wake = false;
    {
      Guard g(sh);
      State s = load_state(sh);
      std::size_t wrap_at = 0;
      std::size_t pos = static_cast<std::size_t>(-1);
      if (sh.maxsize == 0 || s.count < sh.maxsize) pos = place(sh, s, need, wrap_at);
      if (pos != static_cast<std::size_t>(-1)) {
        commit(sh, write_record(sh, ring, s, pos, wrap_at, need, message));
        // Bumped under the mutex: a sleeper that misses the wake below (this process
        // dying first) still sees the move on its periodic check.
        sh.put_seq.fetch_add(1, std::memory_order_seq_cst);
        wake = sh.getters_asleep.load(std::memory_order_seq_cst) != 0;
        done = true;
      } else {
        seen = sh.get_seq.load(std::memory_order_relaxed);
      }
    }
    // Woken after the unlock, so the sleeper does not wake into a held mutex.
    if (wake) futex_wake(&sh.put_seq, 1, true);
    if (done) return true;
    if (!wait_seq(sh, sh.get_seq, sh.putters_asleep, seen, deadline)) return false;
  }
}

bool QueueCore::get(std::vector<std::byte>& out, const Deadline& deadline) {
  QueueShared& sh = *sh_;
  std::byte* ring = ring_of(seg_);
  for (;;) {
    std::uint32_t seen = sh.put_seq.load(std::memory_order_acquire);
    if (sh.count.load(std::memory_order_acquire) != 0) {
      bool done = false, wake = false, corrupt = false;
      {
        Guard g(sh);
        State s = load_state(sh);
        if (s.count != 0) {
          const std::size_t cap = sh.capacity;
          std::uint32_t h[2];
          const std::size_t pos = find_record(sh, ring, s, h);
          const std::size_t len = h[0];
          const std::size_t need = kRecHeader + round8(len);
          bool ok = h[1] == kRecData && need <= cap - pos &&
                    (s.wpos > pos ? pos + need <= s.wpos : true);
          if (!ok) {
            // Only a bug or a stray write can get here; drop everything rather than hang.
            commit(sh, {0, 0, 0, s.unfinished > s.count ? s.unfinished - s.count : 0});
            corrupt = true;
          } else {
            out.resize(len);
            copy_bytes(out.data(), ring + pos + kRecHeader, len);
            commit(sh, after_take(s, pos, need));
            // A message that reached past the hot pages gives those pages back (under the
            // mutex: a writer may reuse them as soon as it is released).
            const std::size_t end = pos + need;
            if (end > sh.hot) {
              long page = ::sysconf(_SC_PAGESIZE);
              std::size_t ps = page > 0 ? static_cast<std::size_t>(page) : 4096;
              std::size_t from = (std::max<std::size_t>(pos, sh.hot) + ps - 1) / ps * ps;
              std::size_t to = end / ps * ps;
              if (to > from)
                (void)::fallocate(seg_->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  static_cast<off_t>(kRingOffset + from),
                                  static_cast<off_t>(to - from));
            }
            done = true;
          }
          sh.get_seq.fetch_add(1, std::memory_order_seq_cst);
          wake = sh.putters_asleep.load(std::memory_order_seq_cst) != 0;
        } else {
          seen = sh.put_seq.load(std::memory_order_relaxed);
        }
      }
      if (wake) futex_wake(&sh.get_seq, INT_MAX, true);
      if (corrupt)
        throw SerializationError("concur: the queue's shared ring was found corrupt; its "
                                 "contents were dropped");
      if (done) return true;
    }
    if (!wait_seq(sh, sh.put_seq, sh.getters_asleep, seen, deadline)) {
      // The deadline passed; a message that arrived meanwhile is still taken (one try).
      if (sh.count.load(std::memory_order_acquire) == 0) return false;
      return get(out, Deadline(kPoll));
    }
  }
}

std::size_t QueueCore::qsize() const noexcept {
  return static_cast<std::size_t>(sh_->count.load(std::memory_order_acquire));
}
bool QueueCore::full() const noexcept {
  return sh_->maxsize != 0 && sh_->count.load(std::memory_order_acquire) >= sh_->maxsize;
}
std::size_t QueueCore::maxsize() const noexcept { return static_cast<std::size_t>(sh_->maxsize); }
std::size_t QueueCore::capacity() const noexcept { return static_cast<std::size_t>(sh_->capacity); }
std::uint64_t QueueCore::unfinished() const noexcept {
  return sh_->unfinished.load(std::memory_order_acquire);
}

void QueueCore::set_spin(std::chrono::nanoseconds spin) noexcept {
  sh_->spin_ns.store(spin.count(), std::memory_order_relaxed);
}

// ---------------------------------------------------------------- JoinableQueue
void QueueCore::task_done() {
  QueueShared& sh = *sh_;
  bool wake = false;
  {
    Guard g(sh);
    State s = load_state(sh);
    if (s.unfinished == 0) throw TaskDoneError();
    State n = s;
    --n.unfinished;
    commit(sh, n);
    if (n.unfinished == 0) {
      sh.done_seq.fetch_add(1, std::memory_order_seq_cst);
      wake = sh.joiners_asleep.load(std::memory_order_seq_cst) != 0;
    }
  }
  if (wake) futex_wake(&sh.done_seq, INT_MAX, true);
}

bool QueueCore::join(const Deadline& deadline) {
  QueueShared& sh = *sh_;
  for (;;) {
    std::uint32_t seen = sh.done_seq.load(std::memory_order_acquire);
    if (sh.unfinished.load(std::memory_order_acquire) == 0) return true;
    if (!wait_seq(sh, sh.done_seq, sh.joiners_asleep, seen, deadline))
      return sh.unfinished.load(std::memory_order_acquire) == 0;
  }
}

// ---------------------------------------------------------------- testing
// The same steps as put() and get() through the same helpers, with an _exit(99) at the
// chosen point; after_commit dies holding the mutex, published, nobody woken.
void QueueCore::put_and_die(std::span<const std::byte> message, DieAt where) {
  QueueShared& sh = *sh_;
  const std::size_t need = kRecHeader + round8(message.size());
  std::byte* ring = ring_of(seg_);
  lock(sh);
  if (where == DieAt::holding_lock) _exit(99);
  State s = load_state(sh);
  std::size_t wrap_at = 0;
  std::size_t pos = place(sh, s, need, wrap_at);
  if (pos == static_cast<std::size_t>(-1)) _exit(98);
  State n = write_record(sh, ring, s, pos, wrap_at, need, message);
  if (where == DieAt::after_copy) _exit(99);
  commit(sh, n, where == DieAt::after_journal);
  _exit(99);
}

void QueueCore::get_and_die(DieAt where) {
  QueueShared& sh = *sh_;
  std::byte* ring = ring_of(seg_);
  lock(sh);
  if (where == DieAt::holding_lock) _exit(99);
  State s = load_state(sh);
  if (s.count == 0) _exit(98);
  std::uint32_t h[2];
  const std::size_t pos = find_record(sh, ring, s, h);
  std::vector<std::byte> out(h[0]);
  copy_bytes(out.data(), ring + pos + kRecHeader, out.size());
  if (where == DieAt::after_copy) _exit(99);
  commit(sh, after_take(s, pos, kRecHeader + round8(h[0])), where == DieAt::after_journal);
  _exit(99);
}

// ---------------------------------------------------------------- scratch buffers
namespace {
thread_local Writer t_writer;
thread_local bool t_writer_busy = false;
thread_local std::vector<std::byte> t_bytes;
thread_local bool t_bytes_busy = false;
}  // namespace

ScratchWriter::ScratchWriter() noexcept : borrowed_(!t_writer_busy) {
  if (borrowed_) {
    t_writer_busy = true;
    w_ = &t_writer;
    w_->clear();
  } else {
    w_ = new Writer;
  }
}
ScratchWriter::~ScratchWriter() {
  if (borrowed_) {
    w_->set_oob_sink(nullptr);
    // A huge message should not pin its buffer for the life of the thread.
    if (w_->capacity() > (std::size_t{4} << 20)) t_writer = Writer();
    t_writer_busy = false;
  } else {
    delete w_;
  }
}

ScratchBytes::ScratchBytes() noexcept : borrowed_(!t_bytes_busy) {
  if (borrowed_) {
    t_bytes_busy = true;
    b_ = &t_bytes;
  } else {
    b_ = new std::vector<std::byte>;
  }
}
ScratchBytes::~ScratchBytes() {
  if (borrowed_) {
    if (b_->capacity() > (std::size_t{4} << 20)) std::vector<std::byte>().swap(*b_);
    t_bytes_busy = false;
  } else {
    delete b_;
  }
}

}  // namespace concur::detail
