// The untyped machinery under Queue<T>, SimpleQueue<T> and JoinableQueue<T>: a ring of
// variable-length messages in one shared segment (detail/ipc_segment.hpp), guarded by a
// robust process-shared mutex, with futex doorbells. See concur/queue.hpp for what users
// are promised; the layout and the failure model are in src/mp/queue.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/detail/ipc_segment.hpp"
#include "concur/detail/ipc_sync.hpp"
#include "concur/detail/process_handoff.hpp"
#include "concur/detail/serialize_core.hpp"

namespace concur::detail {

struct QueueShared;

enum class QueueFlavor : std::uint32_t { queue = 1, simple = 2, joinable = 3 };

struct QueueConfig {
  std::size_t maxsize = 0;        // items; 0: no limit
  std::size_t capacity = 0;       // ring bytes
  std::int64_t spin_ns = 0;       // bounded spin before a wait sleeps
  QueueFlavor flavor = QueueFlavor::queue;
  std::uint64_t type_hash = 0;    // of the element type, checked on attach
  std::string_view type_name{};   // for messages
};

// How a queue travels in a message: its segment and what it must be.
struct QueueRef {
  handoff::FdRef fd{};
  std::uint64_t type_hash = 0;
  std::uint32_t flavor = 0;
  std::uint32_t reserved = 0;
};

// One handle on a shared queue; copies are handles on the same queue.
class QueueCore {
 public:
  // A new queue; std::invalid_argument for a capacity that cannot hold a message.
  static QueueCore create(const QueueConfig& config);
  // The queue a message names (see detail/process_handoff.hpp); throws
  // SerializationError when the segment is not a queue of this type and flavor.
  static QueueCore attach(const QueueRef& ref, QueueFlavor flavor, std::uint64_t type_hash,
                          std::string_view type_name);
  // The reference to put in a message.
  QueueRef export_ref() const;

  // Appends one encoded message. False when there was no room by the deadline (an
  // expired Deadline tries once). SerializationError when it can never fit.
  bool put(std::span<const std::byte> message, const Deadline& deadline);
  // Takes the oldest message into `out` (replacing its contents). False when there was
  // none by the deadline. SerializationError when the ring was found corrupt (its contents
  // are dropped and the queue goes on empty).
  bool get(std::vector<std::byte>& out, const Deadline& deadline);

  std::size_t qsize() const noexcept;
  bool empty() const noexcept { return qsize() == 0; }
  bool full() const noexcept;
  std::size_t maxsize() const noexcept;
  std::size_t capacity() const noexcept;

  // JoinableQueue: one item processed; TaskDoneError when none is outstanding.
  void task_done();
  // JoinableQueue: waits until every item put has been task_done(); false on timeout.
  bool join(const Deadline& deadline);
  // JoinableQueue: items put and not yet task_done().
  std::uint64_t unfinished() const noexcept;

  // How long a waiting get/put/join spins before it sleeps (shared by every handle).
  void set_spin(std::chrono::nanoseconds spin) noexcept;

  // ---- testing: die (_exit(99)) at a chosen point of a put or a get, holding the lock.
  enum class DieAt { holding_lock, after_copy, after_journal, after_commit };
  [[noreturn]] void put_and_die(std::span<const std::byte> message, DieAt where);
  [[noreturn]] void get_and_die(DieAt where);

 private:
  QueueCore(SegmentPtr seg, QueueShared* sh) noexcept : seg_(std::move(seg)), sh_(sh) {}
  SegmentPtr seg_;
  QueueShared* sh_ = nullptr;
};

// A Writer / byte buffer per thread for encoding and receiving messages, so that a put or
// get allocates nothing in the steady state. Re-entrant use (a value whose serialize()
// uses a queue) falls back to fresh buffers.
class ScratchWriter {
 public:
  ScratchWriter() noexcept;
  ~ScratchWriter();
  ScratchWriter(const ScratchWriter&) = delete;
  ScratchWriter& operator=(const ScratchWriter&) = delete;
  Writer& get() noexcept { return *w_; }

 private:
  Writer* w_;
  bool borrowed_;
};
class ScratchBytes {
 public:
  ScratchBytes() noexcept;
  ~ScratchBytes();
  ScratchBytes(const ScratchBytes&) = delete;
  ScratchBytes& operator=(const ScratchBytes&) = delete;
  std::vector<std::byte>& get() noexcept { return *b_; }

 private:
  std::vector<std::byte>* b_;
  bool borrowed_;
};

// FNV-1a of a type's name: the same in every copy of the program.
constexpr std::uint64_t type_hash_of(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace concur::detail
