// SharedMemory (POSIX shm_open) and the untyped part of Value<T>/Array<T>.
#include "concur/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <random>

namespace concur {
namespace detail {

DataObject make_data_object(IpcKind kind, std::size_t elem_size, std::size_t elem_align,
                            std::size_t count, bool with_lock) {
  if (elem_size != 0 && count > (std::numeric_limits<std::size_t>::max() / 2) / elem_size)
    throw std::length_error("shared array too large");
  std::size_t cursor = 0;
  ObjectLayout lock_at{};
  if (with_lock) {
    lock_at = layout_object(0, sizeof(MutexState), alignof(MutexState));
    cursor = lock_at.end;
  }
  ObjectLayout data_at = layout_object(cursor, elem_size * count, elem_align);
  DataObject obj;
  obj.seg = Segment::create(data_at.end, kind == IpcKind::value ? "concur-value" : "concur-array");
  if (with_lock) {
    obj.lock = static_cast<MutexState*>(init_object(*obj.seg, lock_at, IpcKind::rlock));
    mutex_init(*obj.lock, true);
    obj.lock_offset = lock_at.header;
  }
  obj.data = static_cast<std::byte*>(init_object(*obj.seg, data_at, kind, elem_size, count));
  obj.offset = data_at.header;
  obj.count = count;
  return obj;
}

DataObject attach_data_object(const ShmHandle& handle, IpcKind kind, std::size_t elem_size) {
  auto objs = attach_handle(handle, {kind}, 0);
  const ObjectHeader& h = *objs[0].header;
  if (h.elem_size != elem_size)
    throw std::invalid_argument(std::string("attach: the shared ") + ipc_kind_name(kind) +
                                " holds elements of " + std::to_string(h.elem_size) +
                                " bytes, this type has " + std::to_string(elem_size));
  if (h.state_size < h.elem_size * h.count)
    throw std::invalid_argument("attach: shared data shorter than its element count");
  DataObject obj;
  obj.seg = objs[0].seg;
  obj.offset = objs[0].offset;
  obj.data = static_cast<std::byte*>(objs[0].state);
  obj.count = static_cast<std::size_t>(h.count);
  if (objs.size() > 1) {
    expect_kind(objs[1], {IpcKind::rlock});
    obj.lock = static_cast<MutexState*>(objs[1].state);
    obj.lock_offset = objs[1].offset;
    // The lock normally shares the data's segment; keep whichever one holds it alive.
    if (objs[1].seg != obj.seg)
      throw std::invalid_argument("attach: a Value/Array lock must share its segment");
  }
  return obj;
}

ShmHandle data_object_handle(const DataObject& obj, IpcKind kind) {
  ShmHandle h;
  h.parts.push_back(obj.seg->part(kind, obj.offset));
  if (obj.lock) h.parts.push_back(obj.seg->part(IpcKind::rlock, obj.lock_offset));
  return h;
}

}  // namespace detail

// ---------------------------------------------------------------- SharedMemory

namespace {

// "/" + name, spelled so that g++ 12 at -O3 does not raise a false -Wrestrict (PR 105651).
std::string with_slash(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 1);
  out.push_back('/');
  out.append(name);
  return out;
}

// The shm_open name: exactly one leading '/', nothing else that is not a plain file name.
std::string posix_name(std::string_view name) {
  std::string_view bare = name;
  if (!bare.empty() && bare.front() == '/') bare.remove_prefix(1);
  if (bare.empty() || bare.size() > 250 || bare.find('/') != std::string_view::npos ||
      bare == "." || bare == ".." || bare.find('\0') != std::string_view::npos)
    throw std::invalid_argument("SharedMemory: invalid name '" + std::string(name) +
                                "' (want 1-250 characters, no '/' but an optional leading one)");
  return with_slash(bare);
}

[[noreturn]] void throw_shm(const std::string& what, const std::string& name, int err) {
  std::string msg = what + " '" + name + "': " + std::strerror(err);
  if (err == ENOENT) throw FileNotFoundError(msg, err);
  if (err == EEXIST) throw FileExistsError(msg, err);
  throw OSError(msg, err);
}

std::string random_name() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^
                                          (static_cast<std::uint64_t>(getpid()) << 32)};
  static const char* hex = "0123456789abcdef";
  std::string s = "psm_";
  std::uint64_t r = rng();
  for (int i = 0; i < 16; ++i, r >>= 4) s += hex[r & 0xf];
  return s;
}

std::byte* map_shm(int fd, std::size_t size, const std::string& name) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    ::close(fd);
    throw_shm("SharedMemory: cannot map", name, err);
  }
  ::close(fd);  // the mapping keeps the block; Python keeps the fd, we need not
  return static_cast<std::byte*>(p);
}

}  // namespace

SharedMemory SharedMemory::create(std::string_view name, std::size_t size, Options options) {
  if (size == 0) throw std::invalid_argument("SharedMemory: size must be > 0");
  std::string pname = posix_name(name);
  int fd = shm_open(pname.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
  if (fd < 0) throw_shm("SharedMemory: cannot create", pname.substr(1), errno);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    ::close(fd);
    shm_unlink(pname.c_str());
    throw_shm("SharedMemory: cannot size", pname.substr(1), err);
  }
  SharedMemory shm;
  shm.name_ = pname.substr(1);
  try {
    shm.data_ = map_shm(fd, size, shm.name_);
  } catch (...) {
    shm_unlink(pname.c_str());
    throw;
  }
  shm.size_ = size;
  shm.creator_pid_ = getpid();
  shm.unlink_on_destroy_ = options.unlink_on_destroy;
  return shm;
}

SharedMemory SharedMemory::create(std::size_t size, Options options) {
  for (int attempt = 0;; ++attempt) {
    try {
      return create(random_name(), size, options);
    } catch (const FileExistsError&) {
      if (attempt >= 16) throw;
    }
  }
}

SharedMemory::SharedMemory(std::string_view name) {
  std::string pname = posix_name(name);
  name_ = pname.substr(1);
  int fd = shm_open(pname.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw_shm("SharedMemory: no shared memory block named", name_, errno);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw_shm("SharedMemory: cannot stat", name_, err);
  }
  if (st.st_size <= 0) {
    ::close(fd);
    throw OSError("SharedMemory: the block '" + name_ + "' is empty (still being created?)",
                  EINVAL);
  }
  size_ = static_cast<std::size_t>(st.st_size);
  data_ = map_shm(fd, size_, name_);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : name_(std::exchange(other.name_, std::string())),
      data_(std::exchange(other.data_, nullptr)),
      size_(other.size_),
      creator_pid_(std::exchange(other.creator_pid_, 0)),
      unlink_on_destroy_(std::exchange(other.unlink_on_destroy_, false)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    other.name_.clear();
    data_ = std::exchange(other.data_, nullptr);
    size_ = other.size_;
    creator_pid_ = std::exchange(other.creator_pid_, 0);
    unlink_on_destroy_ = std::exchange(other.unlink_on_destroy_, false);
  }
  return *this;
}

SharedMemory::~SharedMemory() { release(); }

void SharedMemory::release() noexcept {
  close();
  // Only the creating process: a forked child destroying its copy must not pull the name
  // from under its parent.
  if (unlink_on_destroy_ && creator_pid_ == getpid()) shm_unlink(with_slash(name_).c_str());
  unlink_on_destroy_ = false;
}

void SharedMemory::close() noexcept {
  if (data_) {
    munmap(data_, size_);
    data_ = nullptr;
  }
}

void SharedMemory::unlink() {
  if (name_.empty()) throw InvalidStateError("SharedMemory: moved-from object has no name");
  if (shm_unlink(with_slash(name_).c_str()) != 0)
    throw_shm("SharedMemory: cannot unlink", name_, errno);
  unlink_on_destroy_ = false;
}

}  // namespace concur
