// Large payload blocks between an MPI pool's parent and its workers on the same host go
// through shared memory, as in a process pool, instead of through MPI (whose transport
// between a parent and the jobs it spawned is TCP): one request area for the pool, written
// by the threads that submit, and one response area per worker, written by that worker.
// The parent creates the memfds; a worker maps them through /proc/<parent>/fd (MPI cannot
// pass descriptors) and checks a random token in their header page, so a worker that only
// looks local (another machine with the same host name) falls back to MPI messages.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>

#include "concur/detail/serialize_core.hpp"
#include "process/shm_area.hpp"

namespace concur::detail::mpi {

inline constexpr std::uint64_t kAreaMagic = 0x434f4e435552424bull;  // "CONCURBK"
// Pages a worker keeps mapped in its response area between results.
inline constexpr std::size_t kRetainBytes = std::size_t{256} << 20;

struct AreaHeader {
  std::uint64_t magic;
  std::uint64_t token;
};

// The parent's side: a new area of default_area_size() after a header page.
inline void create_area(SharedMapping& m, const char* name, std::uint64_t token) {
  m.create(name, kAreaAlign + default_area_size());
  new (m.base()) AreaHeader{kAreaMagic, token};
}

// A worker's side: maps the parent's descriptor; false when it cannot or when the token
// differs (then the mapping is not this pool's).
inline bool attach_area(SharedMapping& m, pid_t parent, int fd, std::uint64_t token) noexcept {
  try {
    m.attach_peer(parent, fd, kAreaAlign);
  } catch (...) {
    return false;
  }
  AreaHeader h;
  std::memcpy(&h, m.base(), sizeof h);
  if (h.magic == kAreaMagic && h.token == token) return true;
  m.reset();
  return false;
}

// Reads blocks of an area by offset, checked against its bounds.
class AreaReader final : public OobSource {
 public:
  explicit AreaReader(const SharedMapping* m = nullptr) noexcept : map_(m) {}
  std::span<const std::byte> get(std::uint64_t id, std::size_t n) override {
    const std::size_t size = map_ ? map_->size() : 0;
    if (id < kAreaAlign || id > size || n > size - id)
      throw SerializationError("concur: out-of-band block outside the shared area");
    return {map_->base() + id, n};
  }

 private:
  const SharedMapping* map_;
};

// A worker's response area: one result's blocks at a time (the parent decodes a result
// before it sends the worker its next task), so blocks are placed one after the other and
// the area starts over with each task, keeping up to kRetainBytes of faulted pages.
class ResponseWriter final : public OobSink {
 public:
  explicit ResponseWriter(SharedMapping* m = nullptr) noexcept : map_(m) {}
  std::uint64_t put(const void* data, std::size_t n) override {
    const std::size_t off = round_up(next_, kPage);
    if (off > map_->size() || n > map_->size() - off)
      throw_area_full(n, map_->size() - kAreaAlign);
    std::memcpy(map_->base() + off, data, n);
    next_ = off + n;
    high_ = std::max(high_, next_);
    return off;
  }
  void start_over() noexcept {
    const std::size_t keep = kAreaAlign + kRetainBytes;
    if (high_ > keep) map_->punch(keep, round_up(high_, kPage) - keep);
    high_ = std::min(high_, keep);
    next_ = kAreaAlign;
  }

 private:
  SharedMapping* map_;
  std::size_t next_ = kAreaAlign;
  std::size_t high_ = kAreaAlign;
};

}  // namespace concur::detail::mpi
