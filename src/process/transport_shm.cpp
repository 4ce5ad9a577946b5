// The shared-memory transport: memfd-backed channels with byte rings, futex/eventfd
// doorbells and sparse out-of-band areas (see detail/process_transport.hpp).
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "concur/detail/process_transport.hpp"
#include "concur/errors.hpp"
#include "process/internal.hpp"
#include "process/shm_area.hpp"

namespace concur::detail {

std::uint64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {

constexpr std::uint64_t kPoolMagic = 0x434f4e4355525050ull;     // "CONCURPP"
constexpr std::uint64_t kChannelMagic = 0x434f4e4355524348ull;  // "CONCURCH"
constexpr std::uint32_t kVersion = 1;
// ---------------------------------------------------------------- shared layouts
struct PoolHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t max_spinners;
  std::uint64_t area_off;
  std::uint64_t area_size;
  alignas(64) std::atomic<std::uint32_t> parent_sleeping;
  std::atomic<std::uint32_t> parent_helping;
  alignas(64) std::atomic<std::uint32_t> spinners;
};
static_assert(sizeof(PoolHeader) <= kPage);

struct ChannelHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t reserved;
  std::uint64_t ring_bytes;
  std::uint64_t max_inline;
  std::uint64_t req_ring_off;
  std::uint64_t resp_ring_off;
  std::uint64_t area_off;
  std::uint64_t area_size;
  alignas(64) std::atomic<std::uint64_t> req_tail;  // parent
  alignas(64) std::atomic<std::uint64_t> req_head;  // worker
  alignas(64) std::atomic<std::uint32_t> req_bell;
  std::atomic<std::uint32_t> worker_sleeping;
  std::atomic<std::uint32_t> worker_spinning;
  alignas(64) std::atomic<std::uint64_t> resp_tail;     // worker
  alignas(64) std::atomic<std::uint64_t> resp_head;     // parent
  std::atomic<std::uint64_t> resp_ack_seq;              // parent
  alignas(64) std::atomic<std::uint64_t> started_seq;   // worker
  std::atomic<std::uint64_t> started_ns;
  std::atomic<std::uint32_t> exit_reason;
  alignas(64) std::atomic<std::uint64_t> skip_seq;      // parent
  std::atomic<std::uint64_t> kill_seq;                  // parent: the kill fence (0: none)
  std::atomic<std::uint64_t> held_seq;                  // worker: a call held by the fence
};
static_assert(sizeof(ChannelHeader) <= kPage);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// One message in a ring, followed by its inline payload; records are 8-byte aligned.
struct Record {
  std::uint32_t size;   // whole record in bytes, multiple of 8
  std::uint16_t kind;   // MsgKind, or kPad
  std::uint16_t flags;  // kSpilled
  std::uint64_t seq;
  std::uint64_t payload_len;
  std::uint64_t spill;  // area offset of a spilled payload
  std::uint64_t check;
};
static_assert(sizeof(Record) == 40);
constexpr std::uint16_t kPad = 0xffff;
constexpr std::uint16_t kSpilled = 1;

std::uint64_t record_check(const Record& r, const std::byte* inline_payload,
                           std::size_t inline_len) noexcept {
  std::uint64_t h = hash_bytes(&r.kind, sizeof r.kind, r.seq ^ 0x9e3779b97f4a7c15ull);
  h = hash_bytes(&r.flags, sizeof r.flags, h);
  h = hash_bytes(&r.payload_len, sizeof r.payload_len, h);
  h = hash_bytes(&r.spill, sizeof r.spill, h);
  h = hash_bytes(&r.size, sizeof r.size, h);
  return hash_bytes(inline_payload, inline_len, h);
}

// Single-producer side of a byte ring.
class RingWriter {
 public:
  RingWriter(std::byte* data, std::size_t bytes, std::atomic<std::uint64_t>* tail,
             std::atomic<std::uint64_t>* head)
      : data_(data), mask_(bytes - 1), bytes_(bytes), tail_(tail), head_(head) {}

  // Writes one record; false when there is no room.
  bool write(MsgKind kind, std::uint64_t seq, std::span<const std::byte> inline_payload,
             std::uint64_t spill, std::uint64_t payload_len, bool spilled, bool corrupt) {
    std::size_t need = round_up(sizeof(Record) + inline_payload.size(), 8);
    std::uint64_t tail = tail_->load(std::memory_order_relaxed);
    std::uint64_t head = head_->load(std::memory_order_acquire);
    std::size_t pos = static_cast<std::size_t>(tail & mask_);
    std::size_t to_end = bytes_ - pos;
    std::size_t used = static_cast<std::size_t>(tail - head);
    if (to_end < need) {
      if (used + to_end + need > bytes_) return false;
      if (to_end >= sizeof(Record)) {
        Record pad{};
        pad.size = static_cast<std::uint32_t>(to_end);
        pad.kind = kPad;
        std::memcpy(data_ + pos, &pad, sizeof pad);
      }
      tail += to_end;
      used += to_end;
      pos = 0;
    }
    if (used + need > bytes_) return false;
    Record r{};
    r.size = static_cast<std::uint32_t>(need);
    r.kind = static_cast<std::uint16_t>(kind);
    r.flags = spilled ? kSpilled : 0;
    r.seq = seq;
    r.payload_len = payload_len;
    r.spill = spill;
    r.check = record_check(r, inline_payload.data(), inline_payload.size());
    if (corrupt) r.check ^= 1;
    std::memcpy(data_ + pos, &r, sizeof r);
    if (!inline_payload.empty())
      std::memcpy(data_ + pos + sizeof r, inline_payload.data(), inline_payload.size());
    tail_->store(tail + need, std::memory_order_release);
    return true;
  }

 private:
  std::byte* data_;
  std::size_t mask_;
  std::size_t bytes_;
  std::atomic<std::uint64_t>* tail_;
  std::atomic<std::uint64_t>* head_;
};

// Single-consumer side of a byte ring. The area resolves spilled payloads.
class RingReader {
 public:
  RingReader(const std::byte* data, std::size_t bytes, std::atomic<std::uint64_t>* tail,
             std::atomic<std::uint64_t>* head)
      : data_(data), mask_(bytes - 1), bytes_(bytes), tail_(tail), head_(head) {}

  bool has_data() const noexcept {
    return tail_->load(std::memory_order_acquire) != head_->load(std::memory_order_relaxed);
  }

  // Reads the next record without consuming it. Throws SerializationError when the ring
  // itself is inconsistent (the stream cannot be resynchronised).
  bool peek(InMessage& out, const std::byte* area, std::size_t area_size) {
    std::uint64_t head = head_->load(std::memory_order_relaxed);
    for (;;) {
      std::uint64_t tail = tail_->load(std::memory_order_acquire);
      if (tail == head) return false;
      if (tail - head > bytes_ || (tail - head) % 8 != 0) corrupt_ring("indices");
      std::size_t pos = static_cast<std::size_t>(head & mask_);
      std::size_t to_end = bytes_ - pos;
      if (to_end < sizeof(Record)) {
        head += to_end;
        head_->store(head, std::memory_order_release);
        continue;
      }
      Record r;
      std::memcpy(&r, data_ + pos, sizeof r);
      if (r.size < sizeof(Record) || r.size % 8 != 0 || r.size > to_end || r.size > tail - head)
        corrupt_ring("record size");
      if (r.kind == kPad) {
        head += r.size;
        head_->store(head, std::memory_order_release);
        continue;
      }
      out = InMessage{};
      out.kind = static_cast<MsgKind>(r.kind);
      out.seq = r.seq;
      out.record_size_ = r.size;
      const std::byte* payload = data_ + pos + sizeof r;
      std::size_t inline_len = (r.flags & kSpilled) ? 0 : static_cast<std::size_t>(r.payload_len);
      if (inline_len > r.size - sizeof r) corrupt_ring("payload length");
      if (record_check(r, payload, inline_len) != r.check) {
        out.corrupt = true;
        return true;
      }
      if (r.flags & kSpilled) {
        if (r.spill > area_size || r.payload_len > area_size - r.spill) {
          out.corrupt = true;
          return true;
        }
        out.payload = {area + r.spill, static_cast<std::size_t>(r.payload_len)};
      } else {
        out.payload = {payload, inline_len};
      }
      return true;
    }
  }

  void consume(const InMessage& m) noexcept {
    std::uint64_t head = head_->load(std::memory_order_relaxed);
    head_->store(head + m.record_size_, std::memory_order_release);
  }

 private:
  [[noreturn]] static void corrupt_ring(const char* what) {
    throw SerializationError(std::string("concur: corrupt channel between processes (") + what +
                             ")");
  }
  const std::byte* data_;
  std::size_t mask_;
  std::size_t bytes_;
  std::atomic<std::uint64_t>* tail_;
  std::atomic<std::uint64_t>* head_;
};

// ---------------------------------------------------------------- parent side
class ShmPool;

class ShmLink final : public WorkerLink, private OobSource {
 public:
  ShmLink(ShmPool* pool, const TransportConfig& cfg);

  bool send(MsgKind kind, std::uint64_t seq, std::span<const std::byte> payload,
            std::uint64_t spill_id, std::size_t spill_len, bool* wake_later) override {
    bool spilled = spill_len != 0;
    bool corrupt = corrupt_next_.exchange(false, std::memory_order_relaxed);
    if (!writer_.write(kind, seq, spilled ? std::span<const std::byte>{} : payload, spill_id,
                       spilled ? spill_len : payload.size(), spilled, corrupt))
      return false;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (hdr_->worker_sleeping.load(std::memory_order_relaxed)) {
      // The new bell value alone stops a worker about to sleep; the system call wakes one
      // that sleeps already.
      hdr_->req_bell.fetch_add(1, std::memory_order_seq_cst);
      if (wake_later) *wake_later = true;
      else wake();
    }
    return true;
  }
  void wake() noexcept override { futex_wake(&hdr_->req_bell, 1, /*shared=*/true); }

  bool receive(InMessage& out) override {
    return reader_.peek(out, map_.base() + hdr_->area_off, hdr_->area_size);
  }
  void release(const InMessage& msg) override {
    reader_.consume(msg);
    hdr_->resp_ack_seq.store(msg.seq, std::memory_order_release);
  }
  OobSource& response_source() override { return *this; }
  bool has_response() const noexcept override { return reader_.has_data(); }

  std::uint64_t started_seq() const noexcept override {
    return hdr_->started_seq.load(std::memory_order_acquire);
  }
  std::uint64_t started_ns() const noexcept override {
    return hdr_->started_ns.load(std::memory_order_acquire);
  }
  bool worker_spinning() const noexcept override {
    return hdr_->worker_spinning.load(std::memory_order_relaxed) != 0;
  }
  ExitReason exit_reason() const noexcept override {
    return static_cast<ExitReason>(hdr_->exit_reason.load(std::memory_order_acquire));
  }
  void skip(std::uint64_t seq) noexcept override {
    hdr_->skip_seq.store(seq, std::memory_order_seq_cst);
  }
  // Dekker-style with the worker's set_started(): each side stores its word, then loads
  // the other's (all seq_cst), so at least one of them sees the other.
  bool fence_kill(std::uint64_t seq) noexcept override {
    // Fences only rise: one on a later call holds everything after it already, and must
    // not be lowered or lifted by a kill that has come too late.
    std::uint64_t prev = hdr_->kill_seq.load(std::memory_order_seq_cst);
    while (prev < seq &&
           !hdr_->kill_seq.compare_exchange_weak(prev, seq, std::memory_order_seq_cst)) {
    }
    if (prev >= seq) return false;  // a later call is fenced: this one has moved on
    if (hdr_->started_seq.load(std::memory_order_seq_cst) == seq) return true;
    // It moved on: let it go, unless another fence has replaced ours meanwhile.
    std::uint64_t mine = seq;
    hdr_->kill_seq.compare_exchange_strong(mine, prev, std::memory_order_seq_cst);
    return false;
  }
  std::uint64_t held_seq() const noexcept override {
    return hdr_->held_seq.load(std::memory_order_acquire);
  }
  std::vector<int> worker_fds() const override { return {map_.fd()}; }
  void corrupt_next_request() noexcept override {
    corrupt_next_.store(true, std::memory_order_relaxed);
  }

 private:
  std::span<const std::byte> get(std::uint64_t id, std::size_t n) override {
    std::size_t area = hdr_->area_size;
    if (id > area || n > area - id)
      throw SerializationError("concur: out-of-band block outside the response area");
    return {map_.base() + hdr_->area_off + id, n};
  }

  SharedMapping map_;
  ChannelHeader* hdr_ = nullptr;
  RingWriter writer_{nullptr, 1, nullptr, nullptr};
  RingReader reader_{nullptr, 1, nullptr, nullptr};
  std::atomic<bool> corrupt_next_{false};
};

class ShmPool final : public PoolTransport {
 public:
  explicit ShmPool(const TransportConfig& cfg) : cfg_(cfg) {
    if (cfg_.request_area == 0) cfg_.request_area = default_area_size();
    if (cfg_.response_area == 0) cfg_.response_area = default_area_size();
    cfg_.request_area = round_up(cfg_.request_area, kAreaAlign);
    cfg_.response_area = round_up(cfg_.response_area, kAreaAlign);
    if (cfg_.ring_bytes < 4 * kPage || (cfg_.ring_bytes & (cfg_.ring_bytes - 1)))
      throw std::invalid_argument("ring_bytes must be a power of two >= 16 KiB");
    if (cfg_.max_inline > cfg_.ring_bytes / 4) cfg_.max_inline = cfg_.ring_bytes / 4;
    map_ = std::make_unique<SharedMapping>();
    map_->create("concur-pool", kAreaAlign + cfg_.request_area);
    hdr_ = new (map_->base()) PoolHeader{};
    hdr_->magic = kPoolMagic;
    hdr_->version = kVersion;
    hdr_->max_spinners = std::max(1u, std::thread::hardware_concurrency() / 2);
    hdr_->area_off = kAreaAlign;
    hdr_->area_size = cfg_.request_area;
    alloc_.emplace(map_.get(), kAreaAlign, cfg_.request_area, cfg_.retain_bytes);
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) throw_os_error("eventfd", errno);
    doorbell_ = UniqueFd(efd);
  }

  std::unique_ptr<WorkerLink> create_link() override {
    return std::make_unique<ShmLink>(this, cfg_);
  }

  std::uint64_t put_request_block(const void* data, std::size_t n) override {
    std::shared_lock alive(life_);
    if (closed_) throw SerializationError("concur: the process pool's transport is closed");
    std::size_t off;
    {
      std::lock_guard lock(mu_);
      off = alloc_->allocate(n);
    }
    if (off == AreaAllocator::npos) throw_area_full(n, cfg_.request_area);
    std::memcpy(map_->base() + kAreaAlign + off, data, n);
    return off;
  }
  void free_request_block(std::uint64_t id) noexcept override {
    std::shared_lock alive(life_);
    if (closed_) return;
    std::lock_guard lock(mu_);
    alloc_->free(static_cast<std::size_t>(id));
  }

  int doorbell_fd() const noexcept override { return doorbell_.get(); }
  void drain_doorbell() noexcept override {
    std::shared_lock alive(life_);
    if (closed_) return;
    std::uint64_t v;
    while (::read(doorbell_.get(), &v, sizeof v) == sizeof v) {
    }
  }
  void close() noexcept override {
    std::unique_lock lock(life_);
    if (closed_) return;
    closed_ = true;
    alloc_.reset();
    map_.reset();
    doorbell_.reset();
    hdr_ = nullptr;
  }
  void set_parent_sleeping(bool sleeping) noexcept override {
    std::shared_lock alive(life_);
    if (closed_) return;
    if (sleeping) hdr_->parent_sleeping.fetch_add(1, std::memory_order_seq_cst);
    else hdr_->parent_sleeping.fetch_sub(1, std::memory_order_seq_cst);
  }
  void set_parent_helping(bool helping) noexcept override {
    std::shared_lock alive(life_);
    if (closed_) return;
    if (helping) hdr_->parent_helping.fetch_add(1, std::memory_order_seq_cst);
    else hdr_->parent_helping.fetch_sub(1, std::memory_order_seq_cst);
  }
  void ring_doorbell() noexcept override {
    std::shared_lock alive(life_);
    if (closed_) return;
    std::uint64_t one = 1;
    ssize_t rc = ::write(doorbell_.get(), &one, sizeof one);
    static_cast<void>(rc);
  }
  std::vector<int> worker_fds() const override {
    std::shared_lock alive(life_);
    if (closed_) throw SerializationError("concur: the process pool's transport is closed");
    return {map_->fd(), doorbell_.get()};
  }
  std::vector<std::byte> describe() const override {
    std::vector<std::byte> out(sizeof(std::uint64_t) * 2);
    std::uint64_t v[2] = {kVersion, cfg_.retain_bytes};
    std::memcpy(out.data(), v, sizeof v);
    return out;
  }

  PoolHeader* header() const noexcept { return hdr_; }

 private:
  TransportConfig cfg_;
  // Held shared by every use of the mapping, exclusively by close().
  mutable std::shared_mutex life_;
  bool closed_ = false;
  std::unique_ptr<SharedMapping> map_;
  PoolHeader* hdr_ = nullptr;
  std::mutex mu_;
  std::optional<AreaAllocator> alloc_;
  UniqueFd doorbell_;
};

ShmLink::ShmLink(ShmPool*, const TransportConfig& cfg) {
  std::size_t ring = cfg.ring_bytes;
  std::size_t req_off = kPage, resp_off = kPage + ring;
  std::size_t area_off = round_up(resp_off + ring, kAreaAlign);
  map_.create("concur-worker", area_off + cfg.response_area);
  hdr_ = new (map_.base()) ChannelHeader{};
  hdr_->magic = kChannelMagic;
  hdr_->version = kVersion;
  hdr_->ring_bytes = ring;
  hdr_->max_inline = cfg.max_inline;
  hdr_->req_ring_off = req_off;
  hdr_->resp_ring_off = resp_off;
  hdr_->area_off = area_off;
  hdr_->area_size = cfg.response_area;
  writer_ = RingWriter(map_.base() + req_off, ring, &hdr_->req_tail, &hdr_->req_head);
  reader_ = RingReader(map_.base() + resp_off, ring, &hdr_->resp_tail, &hdr_->resp_head);
}

// ---------------------------------------------------------------- worker side
class ShmEndpoint final : public WorkerEndpoint, private OobSource {
 public:
  ShmEndpoint(std::vector<UniqueFd> fds, std::size_t retain) {
    if (fds.size() != 3) throw SerializationError("concur: worker channel needs 3 descriptors");
    pool_map_.attach(std::move(fds[0]), kPage);
    doorbell_ = std::move(fds[1]);
    chan_map_.attach(std::move(fds[2]), kPage);
    pool_ = reinterpret_cast<PoolHeader*>(pool_map_.base());
    hdr_ = reinterpret_cast<ChannelHeader*>(chan_map_.base());
    if (pool_->magic != kPoolMagic || pool_->version != kVersion || hdr_->magic != kChannelMagic ||
        hdr_->version != kVersion)
      throw SerializationError("concur: worker channel has an unknown layout");
    if (pool_->area_off + pool_->area_size > pool_map_.size() ||
        hdr_->area_off + hdr_->area_size > chan_map_.size() ||
        hdr_->resp_ring_off + hdr_->ring_bytes > chan_map_.size())
      throw SerializationError("concur: worker channel smaller than its layout");
    std::size_t ring = hdr_->ring_bytes;
    reader_ = RingReader(chan_map_.base() + hdr_->req_ring_off, ring, &hdr_->req_tail,
                         &hdr_->req_head);
    writer_ = RingWriter(chan_map_.base() + hdr_->resp_ring_off, ring, &hdr_->resp_tail,
                         &hdr_->resp_head);
    alloc_.emplace(&chan_map_, hdr_->area_off, hdr_->area_size, retain);
  }

  bool receive(InMessage& out, std::int64_t spin_ns, int liveness_ms, bool (*alive)(void*),
               void* ctx) override {
    alive_ = alive;
    alive_ctx_ = ctx;
    const std::byte* area = pool_map_.base() + pool_->area_off;
    std::size_t area_size = pool_->area_size;
    if (reader_.peek(out, area, area_size)) return true;
    // Spin (bounded, yielding) while few others do, then sleep on the bell. The budget
    // adapts: requests that come back to back keep it full, but after a request woke us
    // from a long sleep there is no spin at all: a woken worker usually runs on its
    // waker's CPU, and spinning there (sched_yield does not hand the CPU back to a waker
    // that has used more than its share) would only delay the waker picking up the result.
    std::int64_t budget = std::min(spin_ns, spin_budget_ < 0 ? spin_ns : spin_budget_);
    if (budget > 0 &&
        pool_->spinners.fetch_add(1, std::memory_order_relaxed) < pool_->max_spinners) {
      hdr_->worker_spinning.store(1, std::memory_order_relaxed);
      std::uint64_t until = monotonic_ns() + static_cast<std::uint64_t>(budget);
      bool got = false;
      for (;;) {
        for (int i = 0; i < 32 && !got; ++i) {
          cpu_relax();
          got = reader_.has_data();
        }
        if (got || monotonic_ns() >= until) break;
        sched_yield();
        got = reader_.has_data();
        if (got) break;
      }
      hdr_->worker_spinning.store(0, std::memory_order_relaxed);
      pool_->spinners.fetch_sub(1, std::memory_order_relaxed);
      if (got && reader_.peek(out, area, area_size)) {
        spin_budget_ = spin_ns;
        return true;
      }
    } else if (budget > 0) {
      pool_->spinners.fetch_sub(1, std::memory_order_relaxed);
    }
    const std::uint64_t slept_at = monotonic_ns();
    for (;;) {
      hdr_->worker_sleeping.store(1, std::memory_order_seq_cst);
      std::uint32_t bell = hdr_->req_bell.load(std::memory_order_seq_cst);
      if (reader_.has_data()) {
        hdr_->worker_sleeping.store(0, std::memory_order_relaxed);
        if (reader_.peek(out, area, area_size)) return true;
        continue;
      }
      bool woke = futex_wait(&hdr_->req_bell, bell,
                             deadline_after(std::chrono::milliseconds(liveness_ms)),
                             /*shared=*/true);
      hdr_->worker_sleeping.store(0, std::memory_order_relaxed);
      if (reader_.peek(out, area, area_size)) {
        // Woken soon after falling asleep: requests stream, and a spin would have caught
        // this one.
        const bool soon = monotonic_ns() - slept_at < static_cast<std::uint64_t>(spin_ns);
        spin_budget_ = soon ? spin_ns : 0;
        return true;
      }
      if (!woke && alive && !alive(ctx)) return false;
    }
  }

  void release(const InMessage& msg) override { reader_.consume(msg); }

  OobSource& request_source() override { return *this; }

  OobSink& response_sink(std::uint64_t seq) override {
    sink_.self = this;
    sink_.seq = seq;
    return sink_;
  }

  void send(MsgKind kind, std::uint64_t seq, std::span<const std::byte> payload) override {
    reclaim();
    bool spilled = payload.size() > hdr_->max_inline;
    std::uint64_t spill = 0;
    if (spilled) {
      spill = place(seq, payload.data(), payload.size());
    }
    // The parent drains the ring as it reads results; wait for room, but not for a parent
    // that has gone.
    for (unsigned round = 1; !writer_.write(kind, seq, spilled ? std::span<const std::byte>{} : payload,
                                            spill, payload.size(), spilled, false);
         ++round) {
      wake_parent();
      if (round % 4096 == 0 && alive_ && !alive_(alive_ctx_))
        throw SerializationError("concur: the parent process is gone");
      sched_yield();
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake_parent();
  }

  void discard_blocks(std::uint64_t seq) noexcept override {
    while (!blocks_.empty() && blocks_.back().first == seq) {
      alloc_->free(blocks_.back().second);
      blocks_.pop_back();
    }
  }

  bool set_started(std::uint64_t seq, std::uint64_t now_ns) noexcept override {
    // Marked held before it is published as started: a kill landing before the mark is
    // cleared finds the call not run, and the parent gives it to another worker.
    hdr_->held_seq.store(seq, std::memory_order_relaxed);
    hdr_->started_ns.store(now_ns, std::memory_order_relaxed);
    hdr_->started_seq.store(seq, std::memory_order_seq_cst);
    hold_while_fenced(seq);
    // Only read after this process has died (its stores are then all visible): no fence.
    hdr_->held_seq.store(0, std::memory_order_release);
    // Pairs with the parent's skip(): it writes skip_seq then reads started_seq.
    return hdr_->skip_seq.load(std::memory_order_seq_cst) != seq;
  }
  void set_exit_reason(ExitReason r) noexcept override {
    hdr_->exit_reason.store(static_cast<std::uint32_t>(r), std::memory_order_release);
  }

 private:
  struct Sink final : OobSink {
    ShmEndpoint* self = nullptr;
    std::uint64_t seq = 0;
    std::uint64_t put(const void* data, std::size_t n) override {
      return self->place(seq, data, n);
    }
  };

  std::uint64_t place(std::uint64_t seq, const void* data, std::size_t n) {
    reclaim();
    std::size_t off = alloc_->allocate(n);
    if (off == AreaAllocator::npos) throw_area_full(n, hdr_->area_size);
    blocks_.emplace_back(seq, off);
    std::memcpy(chan_map_.base() + hdr_->area_off + off, data, n);
    return off;
  }

  // Frees the blocks of responses the parent has finished decoding.
  void reclaim() noexcept {
    std::uint64_t acked = hdr_->resp_ack_seq.load(std::memory_order_acquire);
    while (!blocks_.empty() && blocks_.front().first <= acked) {
      alloc_->free(blocks_.front().second);
      blocks_.pop_front();
    }
  }

  // The parent is killing this worker for an earlier call, or about to decide it did not
  // need to (a few microseconds): wait for either, or for a parent that has gone.
  void hold_while_fenced(std::uint64_t seq) noexcept {
    for (unsigned round = 1;; ++round) {
      std::uint64_t k = hdr_->kill_seq.load(std::memory_order_seq_cst);
      if (k == 0 || k >= seq) return;
      if (round < 64) {
        sched_yield();
      } else {
        ::usleep(100);
        if (round % 2048 == 0 && alive_ && !alive_(alive_ctx_)) return;
      }
    }
  }

  void wake_parent() noexcept {
    // A parent thread polling the rings itself will see the response: no system call.
    if (pool_->parent_sleeping.load(std::memory_order_seq_cst) &&
        !pool_->parent_helping.load(std::memory_order_seq_cst)) {
      std::uint64_t one = 1;
      ssize_t rc = ::write(doorbell_.get(), &one, sizeof one);
      static_cast<void>(rc);
    }
  }

  std::span<const std::byte> get(std::uint64_t id, std::size_t n) override {
    std::size_t area = pool_->area_size;
    if (id > area || n > area - id)
      throw SerializationError("concur: out-of-band block outside the request area");
    return {pool_map_.base() + pool_->area_off + id, n};
  }

  SharedMapping pool_map_;
  SharedMapping chan_map_;
  UniqueFd doorbell_;
  PoolHeader* pool_ = nullptr;
  ChannelHeader* hdr_ = nullptr;
  RingReader reader_{nullptr, 1, nullptr, nullptr};
  RingWriter writer_{nullptr, 1, nullptr, nullptr};
  std::optional<AreaAllocator> alloc_;
  std::deque<std::pair<std::uint64_t, std::size_t>> blocks_;  // (response seq, offset)
  Sink sink_;
  bool (*alive_)(void*) = nullptr;  // the liveness check of the last receive()
  void* alive_ctx_ = nullptr;
  std::int64_t spin_budget_ = -1;  // -1: the caller's full budget
};

}  // namespace

std::unique_ptr<PoolTransport> PoolTransport::create_shm(const TransportConfig& cfg) {
  return std::make_unique<ShmPool>(cfg);
}

std::unique_ptr<WorkerEndpoint> WorkerEndpoint::attach_shm(std::span<const std::byte> description,
                                                           std::vector<UniqueFd> fds) {
  std::uint64_t v[2] = {0, 0};
  if (description.size() >= sizeof v) std::memcpy(v, description.data(), sizeof v);
  if (v[0] != kVersion) throw SerializationError("concur: transport version mismatch");
  return std::make_unique<ShmEndpoint>(std::move(fds), static_cast<std::size_t>(v[1]));
}

}  // namespace concur::detail
