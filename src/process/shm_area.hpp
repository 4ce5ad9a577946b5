// Sparse shared-memory areas for out-of-band payload blocks, shared by the transports
// that carry large blocks beside their messages: the process pool's (transport_shm.cpp)
// and the MPI pool's for workers on this host (src/mpi/). An area is a memfd of large
// virtual size mapped in both processes; only the pages a block touches cost memory.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <algorithm>
#include <map>

#include "concur/detail/process_fd.hpp"

namespace concur::detail {

inline constexpr std::size_t kPage = 4096;
inline constexpr std::size_t kAreaAlign = std::size_t{2} << 20;  // areas start 2 MiB aligned

inline std::size_t round_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

// Virtual size of one area: the physical memory, between 4 and 64 GiB (less under TSan,
// which shadows every mapping).
std::size_t default_area_size();

// A memfd mapped shared (MAP_NORESERVE) in this process.
class SharedMapping {
 public:
  SharedMapping() = default;
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  ~SharedMapping();

  // A new memfd of `size` bytes (sparse), mapped. Throws OSError.
  void create(const char* name, std::size_t size);
  // Maps a descriptor received from the creator; SerializationError when smaller than
  // min_size.
  void attach(UniqueFd fd, std::size_t min_size);
  // Maps descriptor `fd` of process `pid` (same user) through /proc/<pid>/fd: for peers
  // that cannot pass descriptors (MPI's). Throws OSError.
  void attach_peer(pid_t pid, int fd, std::size_t min_size);
  // Unmaps and closes now.
  void reset() noexcept;

  std::byte* base() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_.get(); }
  // Gives the pages of [off, off+n) back to the system (both processes see zeros after).
  void punch(std::size_t off, std::size_t n) noexcept;

 private:
  void map(std::size_t size);
  UniqueFd fd_;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

// Best-fit allocator over offsets of a sparse area, local to the one process that writes
// the area (not thread-safe). Freed pages stay mapped up to `retain` bytes so equal-sized
// payloads reuse already-faulted pages; beyond that they are punched out and returned to
// the system.
class AreaAllocator {
 public:
  AreaAllocator(SharedMapping* map, std::size_t area_off, std::size_t area_size,
                std::size_t retain);

  // Offset (within the area) of n bytes, or npos when full.
  std::size_t allocate(std::size_t n);
  void free(std::size_t off) noexcept;
  bool owns(std::size_t off, std::size_t n) const noexcept;

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  // Committed (retained) bytes a fresh allocation reuses: approximate, for accounting.
  std::size_t overlap_committed(std::size_t start, std::size_t size) const noexcept {
    return start < brk_ ? std::min(size, brk_ - start) : 0;
  }
  void insert_free(std::size_t off, std::size_t len);
  void erase_free(std::size_t off, std::size_t len);

  SharedMapping* map_;
  std::size_t area_off_;
  std::size_t retain_;
  std::size_t retained_ = 0;
  std::size_t brk_ = 0;
  std::map<std::size_t, std::size_t> free_by_off_;
  std::multimap<std::size_t, std::size_t> free_by_size_;
  std::map<std::size_t, std::size_t> used_;
};

// The SerializationError of a block that does not fit in its area.
[[noreturn]] void throw_area_full(std::size_t n, std::size_t area);

}  // namespace concur::detail
