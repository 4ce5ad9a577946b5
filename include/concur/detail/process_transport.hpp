// The transport between a pool's parent process and its workers, behind an interface so
// that another medium (pipes, MPI) can replace the shared-memory one.
//
// Model: per worker, an ordered request stream (parent -> worker) and an ordered response
// stream (worker -> parent); each message is (kind, seq, payload). Payload blocks of
// kOobThreshold bytes or more travel out of band: the request side through one
// pool-wide area written while a task is encoded (the caller's thread pays for the copy,
// and any worker can read it), the response side through a per-worker area. Out-of-band
// ids are offsets, validated by the reader against the area's bounds.
//
// The shared-memory implementation (src/process/transport_shm.cpp): one memfd per pool
// (header + request area) and one per worker (header + two byte rings + response area),
// mapped in both processes. Areas are sparse files of large virtual size: only the pages
// a payload touches cost memory, and a freed block keeps its pages (mapped on both sides)
// up to a retention limit, so the next payload of that size pays no page faults.
// Doorbells: the worker sleeps on a futex in its channel header after a bounded spin; the
// parent's collector sleeps in epoll on an eventfd the workers write only when it said
// it was asleep.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/detail/process_fd.hpp"
#include "concur/detail/serialize_core.hpp"

namespace concur::detail {

enum class MsgKind : std::uint16_t {
  // parent -> worker
  call = 1,        // payload: encoded remote call
  exit = 2,        // finish what came before, then exit cleanly
  // worker -> parent
  outcome = 16,    // payload: encoded outcome of the call with the same seq
  protocol_error = 17,  // the request with this seq was corrupt; payload: message text
};

// Why a worker left on its own (written in its channel header before it exits).
enum class ExitReason : std::uint32_t {
  none = 0,
  asked = 1,          // an exit request (shutdown)
  max_tasks = 2,      // max_tasks_per_child reached
  max_memory = 3,     // max_memory_per_child exceeded after a task
  parent_gone = 4,
  channel_corrupt = 5,
};

// A received message; payload stays valid until the endpoint's release().
struct InMessage {
  MsgKind kind{};
  std::uint64_t seq = 0;
  std::span<const std::byte> payload{};
  bool corrupt = false;  // the payload failed its check; `payload` is empty
  std::uint32_t record_size_ = 0;  // transport bookkeeping
};

// Sizes of the shared-memory transport. Defaults suit a process pool.
struct TransportConfig {
  std::size_t ring_bytes = std::size_t{1} << 20;  // each direction, power of two
  std::size_t max_inline = std::size_t{64} << 10; // larger payloads spill to the area
  std::size_t request_area = 0;   // 0: chosen from physical memory
  std::size_t response_area = 0;  // 0: chosen from physical memory
  std::size_t retain_bytes = std::size_t{256} << 20;  // freed pages kept mapped per area
};

// Parent side of one worker's channel.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  // Appends a request; false when the ring is full (the caller keeps the task).
  // Wakes the worker if it sleeps; or, given `wake_later`, sets it and leaves the system
  // call to wake(), so that a caller holding locks can make it after releasing them.
  virtual bool send(MsgKind kind, std::uint64_t seq, std::span<const std::byte> payload,
                    std::uint64_t spill_id = 0, std::size_t spill_len = 0,
                    bool* wake_later = nullptr) = 0;
  // Wakes the worker for requests that send() left to the caller.
  virtual void wake() noexcept = 0;
  // Next response if one is there (never blocks). Single consumer at a time.
  virtual bool receive(InMessage& out) = 0;
  // Done with the message returned by receive(); `seq` acknowledges its out-of-band blocks.
  virtual void release(const InMessage& msg) = 0;
  // Reads the response area for the decoder.
  virtual OobSource& response_source() = 0;
  // True when a response is waiting (cheap: two loads).
  virtual bool has_response() const noexcept = 0;

  // Worker progress, published by the worker: the seq of the call it started last
  // (0: none), when (CLOCK_MONOTONIC ns), and whether it is spinning for work.
  virtual std::uint64_t started_seq() const noexcept = 0;
  virtual std::uint64_t started_ns() const noexcept = 0;
  virtual bool worker_spinning() const noexcept = 0;
  virtual ExitReason exit_reason() const noexcept = 0;

  // Asks the worker to skip the call `seq` if it has not started it (it then answers
  // with an empty outcome). Whether it had started: compare started_seq() afterwards.
  virtual void skip(std::uint64_t seq) noexcept = 0;

  // Killing the worker to stop the call `seq` races with the worker finishing it and
  // starting the next one, which the kill would then hit instead. fence_kill(seq) makes the
  // worker hold before it starts any later call, and returns whether `seq` is still the
  // one running: then kill the worker (a later call it was about to start is reported by
  // held_seq() and did not run). When it returns false the fence is already lifted.
  // Fences only rise: a kill that comes too late never lifts or lowers the fence of one
  // still on its way.
  virtual bool fence_kill(std::uint64_t seq) noexcept = 0;
  // The call the worker holds before starting because of a kill fence (0: none).
  virtual std::uint64_t held_seq() const noexcept = 0;

  // Descriptors the worker needs to attach (its channel).
  virtual std::vector<int> worker_fds() const = 0;
  // Debugging/testing: corrupt the payload check of the next request sent.
  virtual void corrupt_next_request() noexcept = 0;
};

// Parent side of a pool: request area, doorbell, and a factory of worker links.
class PoolTransport {
 public:
  virtual ~PoolTransport() = default;
  static std::unique_ptr<PoolTransport> create_shm(const TransportConfig& cfg);

  virtual std::unique_ptr<WorkerLink> create_link() = 0;
  // Out-of-band request blocks. put() copies n bytes and returns the block's id; throws
  // SerializationError when the area cannot hold them.
  virtual std::uint64_t put_request_block(const void* data, std::size_t n) = 0;
  virtual void free_request_block(std::uint64_t id) noexcept = 0;

  // The parent's doorbell: readable when a worker posted a response while the parent's
  // collector was marked asleep. drain() resets it.
  virtual int doorbell_fd() const noexcept = 0;
  virtual void drain_doorbell() noexcept = 0;
  // The collector announces it is about to sleep (true) or is awake (false). Workers ring
  // the doorbell only while it sleeps. Sequentially consistent with the workers' checks.
  virtual void set_parent_sleeping(bool sleeping) noexcept = 0;
  // Wakes the collector from another parent thread.
  virtual void ring_doorbell() noexcept = 0;
  // A parent thread starts (true) or stops (false) polling the response rings itself:
  // while one does, workers do not ring the doorbell for the sleeping collector.
  virtual void set_parent_helping(bool helping) noexcept = 0;

  // Descriptors every worker needs (pool area, doorbell).
  virtual std::vector<int> worker_fds() const = 0;
  // Releases the memory and descriptors now (the object may still be called: requests
  // then fail, the doorbell does nothing). Thread-safe.
  virtual void close() noexcept = 0;
  // Serialised description of the layout for the worker (sizes), sent at hand-shake.
  virtual std::vector<std::byte> describe() const = 0;
};

// Worker side of its channel.
class WorkerEndpoint {
 public:
  virtual ~WorkerEndpoint() = default;
  // Attaches to the channel described by `description` using the descriptors that came
  // with it (pool fds first, then link fds). Throws OSError / SerializationError.
  static std::unique_ptr<WorkerEndpoint> attach_shm(std::span<const std::byte> description,
                                                    std::vector<UniqueFd> fds);

  // Blocks for the next request: spins for `spin_ns`, then sleeps on the doorbell; every
  // `liveness_ms` while asleep it calls alive(), and gives up (false) when it says no.
  virtual bool receive(InMessage& out, std::int64_t spin_ns, int liveness_ms,
                       bool (*alive)(void*), void* ctx) = 0;
  virtual void release(const InMessage& msg) = 0;
  virtual OobSource& request_source() = 0;
  // A sink placing response blocks in the response area for the response with this seq.
  virtual OobSink& response_sink(std::uint64_t seq) = 0;
  // Appends a response; payloads beyond the inline limit spill to the response area.
  // Throws SerializationError when it cannot be stored.
  virtual void send(MsgKind kind, std::uint64_t seq, std::span<const std::byte> payload) = 0;
  // Drops the out-of-band blocks placed for `seq` (the response was replaced).
  virtual void discard_blocks(std::uint64_t seq) noexcept = 0;

  // Publishes that the call `seq` starts now; false when the parent asked to skip it.
  // Waits first while the parent holds a kill fence on an earlier call (WorkerLink::
  // fence_kill): the parent then either kills this worker or lets it go on at once.
  virtual bool set_started(std::uint64_t seq, std::uint64_t now_ns) noexcept = 0;
  virtual void set_exit_reason(ExitReason r) noexcept = 0;
};

// CLOCK_MONOTONIC in nanoseconds (comparable across processes on one machine).
std::uint64_t monotonic_ns() noexcept;

}  // namespace concur::detail
