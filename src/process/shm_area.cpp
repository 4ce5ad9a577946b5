// Sparse shared-memory areas and their block allocator (see shm_area.hpp).
#include "process/shm_area.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "concur/errors.hpp"
#include "process/internal.hpp"

namespace concur::detail {

std::size_t default_area_size() {
#if defined(CONCUR_TSAN)
  // TSan maps shadow for every application mapping; keep its areas modest.
  return std::size_t{4} << 30;
#else
  std::size_t ram = physical_memory();
  std::size_t want = std::max<std::size_t>(ram, std::size_t{4} << 30);
  return round_up(std::min<std::size_t>(want, std::size_t{64} << 30), kAreaAlign);
#endif
}

// ---------------------------------------------------------------- SharedMapping

SharedMapping::~SharedMapping() { reset(); }

void SharedMapping::reset() noexcept {
  if (base_) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
  fd_.reset();
}

void SharedMapping::create(const char* name, std::size_t size) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) throw_os_error("memfd_create", errno);
  fd_ = UniqueFd(fd);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) throw_os_error("ftruncate", errno);
  map(size);
}

void SharedMapping::attach(UniqueFd fd, std::size_t min_size) {
  fd_ = std::move(fd);
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) throw_os_error("fstat", errno);
  if (static_cast<std::size_t>(st.st_size) < min_size)
    throw SerializationError("concur: shared channel smaller than its header says");
  map(static_cast<std::size_t>(st.st_size));
}

void SharedMapping::attach_peer(pid_t pid, int fd, std::size_t min_size) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  int own = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (own < 0) throw_os_error("open " + path, errno);
  attach(UniqueFd(own), min_size);
}

void SharedMapping::punch(std::size_t off, std::size_t n) noexcept {
  ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
              static_cast<off_t>(n));
}

void SharedMapping::map(std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                   fd_.get(), 0);
  if (p == MAP_FAILED) throw_os_error("mmap of a shared channel", errno);
  base_ = static_cast<std::byte*>(p);
  size_ = size;
}

// ---------------------------------------------------------------- AreaAllocator

AreaAllocator::AreaAllocator(SharedMapping* map, std::size_t area_off, std::size_t area_size,
                             std::size_t retain)
    : map_(map), area_off_(area_off), retain_(retain) {
  free_by_off_[0] = area_size;
  free_by_size_.emplace(area_size, 0);
}

std::size_t AreaAllocator::allocate(std::size_t n) {
  std::size_t align = n >= (std::size_t{64} << 10) ? kPage : 64;
  std::size_t size = round_up(std::max<std::size_t>(n, 1), align);
  // Best fit: smallest free block that can hold size after aligning its start.
  for (auto it = free_by_size_.lower_bound(size); it != free_by_size_.end(); ++it) {
    std::size_t off = it->second, len = it->first;
    std::size_t start = round_up(off, align);
    if (start - off + size > len) continue;
    erase_free(off, len);
    if (start > off) insert_free(off, start - off);
    std::size_t end = start + size, block_end = off + len;
    if (block_end > end) insert_free(end, block_end - end);
    used_[start] = size;
    if (end > brk_) brk_ = end;
    retained_ -= std::min(retained_, overlap_committed(start, size));
    return start;
  }
  return npos;
}

void AreaAllocator::free(std::size_t off) noexcept {
  auto it = used_.find(off);
  if (it == used_.end()) return;
  std::size_t size = it->second;
  used_.erase(it);
  retained_ += size;
  if (retained_ > retain_) {
    // Give these pages back (they are page aligned when large).
    std::size_t a = round_up(off, kPage), e = (off + size) / kPage * kPage;
    if (e > a) {
      map_->punch(area_off_ + a, e - a);
      retained_ -= std::min(retained_, e - a);
    }
  }
  // Coalesce with neighbours.
  std::size_t start = off, len = size;
  auto next = free_by_off_.lower_bound(off);
  if (next != free_by_off_.end() && next->first == off + size) {
    len += next->second;
    erase_free(next->first, next->second);
  }
  auto prev = free_by_off_.lower_bound(off);
  if (prev != free_by_off_.begin()) {
    --prev;
    if (prev->first + prev->second == off) {
      start = prev->first;
      len += prev->second;
      erase_free(prev->first, prev->second);
    }
  }
  insert_free(start, len);
}

bool AreaAllocator::owns(std::size_t off, std::size_t n) const noexcept {
  auto it = used_.find(off);
  return it != used_.end() && n <= it->second;
}

void AreaAllocator::insert_free(std::size_t off, std::size_t len) {
  free_by_off_[off] = len;
  free_by_size_.emplace(len, off);
}

void AreaAllocator::erase_free(std::size_t off, std::size_t len) {
  free_by_off_.erase(off);
  auto range = free_by_size_.equal_range(len);
  for (auto it = range.first; it != range.second; ++it)
    if (it->second == off) {
      free_by_size_.erase(it);
      break;
    }
}

[[noreturn]] void throw_area_full(std::size_t n, std::size_t area) {
  throw SerializationError("concur: a payload block of " + std::to_string(n) +
                           " bytes does not fit in the shared transfer area (" +
                           std::to_string(area >> 20) + " MiB)");
}

}  // namespace concur::detail
