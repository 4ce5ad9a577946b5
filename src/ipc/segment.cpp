// Shared segments (memfd + MAP_SHARED) and the object headers inside them.
#include "concur/detail/ipc_segment.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "concur/errors.hpp"

namespace concur::detail {
namespace {

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_up(std::size_t n, std::size_t align) noexcept {
  return (n + align - 1) / align * align;
}

[[noreturn]] void throw_os(const std::string& what, int err) {
  throw OSError(what + ": " + std::strerror(err), err);
}

// Segments mapped in this process, by file identity: attaching a segment this process
// already maps reuses that mapping, so one primitive has one address per process (less
// address space, and ThreadSanitizer sees one mutex rather than two aliases).
struct Registry {
  std::mutex m;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::weak_ptr<Segment>> segments;
};
Registry& registry() {
  // Never destroyed: segments may outlive static teardown. A fork while another thread
  // holds the mutex would leave it locked forever in the child, hence the atfork hooks.
  static Registry* r = [] {
    auto* reg = new Registry;
    pthread_atfork([] { registry().m.lock(); }, [] { registry().m.unlock(); },
                   [] { registry().m.unlock(); });
    return reg;
  }();
  return *r;
}

// initial-exec: the library is built -fPIC, and the general TLS model would cost a
// __tls_get_addr call on every lock operation; one int of static TLS is always available.
__attribute__((tls_model("initial-exec"))) thread_local pid_t t_tid = 0;

void forget_tid_in_child() noexcept { t_tid = 0; }

}  // namespace

const char* ipc_kind_name(IpcKind kind) noexcept {
  switch (kind) {
    case IpcKind::lock: return "Lock";
    case IpcKind::rlock: return "RLock";
    case IpcKind::semaphore: return "Semaphore";
    case IpcKind::bounded_semaphore: return "BoundedSemaphore";
    case IpcKind::event: return "Event";
    case IpcKind::condition: return "Condition";
    case IpcKind::barrier: return "Barrier";
    case IpcKind::value: return "Value";
    case IpcKind::array: return "Array";
  }
  return "unknown";
}

pid_t current_tid() noexcept {
  if (t_tid == 0) {
    // The cache must not survive fork: the child's thread has a new id, and a stale one
    // would make it believe it holds locks its parent holds.
    static const bool registered = [] {
      pthread_atfork(nullptr, nullptr, &forget_tid_in_child);
      return true;
    }();
    (void)registered;
    t_tid = static_cast<pid_t>(gettid());
  }
  return t_tid;
}

std::shared_ptr<Segment> Segment::create(std::size_t size, const char* label) {
  std::size_t length = round_up(size == 0 ? 1 : size, page_size());
  int fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw_os(std::string("memfd_create(") + label + ")", errno);
  if (ftruncate(fd, static_cast<off_t>(length)) != 0) {
    int err = errno;
    ::close(fd);
    throw_os("ftruncate of a shared segment", err);
  }
  // A peer that shrank the file would turn every access into SIGBUS; sealing rules it out.
  (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw_os("fstat of a shared segment", err);
  }
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    ::close(fd);
    throw_os("mmap of a shared segment", err);
  }
  SegmentPtr seg(new Segment(fd, static_cast<std::byte*>(base), length,
                             static_cast<std::uint64_t>(st.st_dev),
                             static_cast<std::uint64_t>(st.st_ino)));
  Registry& r = registry();
  std::lock_guard lk(r.m);
  r.segments[{seg->dev_, seg->ino_}] = seg;
  return seg;
}

std::shared_ptr<Segment> Segment::open(const ShmPart& part) {
  Registry& r = registry();
  {
    std::lock_guard lk(r.m);
    auto it = r.segments.find({part.dev, part.ino});
    if (it != r.segments.end())
      if (SegmentPtr seg = it->second.lock()) return seg;
  }
  auto same = [&](int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_dev) == part.dev &&
           static_cast<std::uint64_t>(st.st_ino) == part.ino;
  };
  int fd = -1;
  if (part.fd >= 0 && fcntl(part.fd, F_GETFD) != -1 && same(part.fd)) {
    fd = fcntl(part.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw_os("dup of a shared segment descriptor", errno);
  } else {
    std::string path =
        "/proc/" + std::to_string(part.pid) + "/fd/" + std::to_string(part.fd);
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      throw_os(std::string("cannot attach ") + ipc_kind_name(part.kind) +
                   ": descriptor not passed to this process and " + path + " unavailable",
               errno);
    }
    if (!same(fd)) {
      ::close(fd);
      throw OSError(std::string("cannot attach ") + ipc_kind_name(part.kind) + ": " + path +
                        " is not the exported segment (exporting process gone?)",
                    ESTALE);
    }
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw_os("fstat of a shared segment", err);
  }
  auto length = static_cast<std::size_t>(st.st_size);
  if (length == 0) {
    ::close(fd);
    throw OSError("cannot attach: the shared segment is empty", EINVAL);
  }
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    ::close(fd);
    throw_os("mmap of a shared segment", err);
  }
  SegmentPtr seg(new Segment(fd, static_cast<std::byte*>(base), length, part.dev, part.ino));
  std::lock_guard lk(r.m);
  auto& slot = r.segments[{part.dev, part.ino}];
  if (SegmentPtr raced = slot.lock()) return raced;  // another thread attached it meanwhile
  slot = seg;
  return seg;
}

Segment::~Segment() {
  {
    Registry& r = registry();
    std::lock_guard lk(r.m);
    auto it = r.segments.find({dev_, ino_});
    if (it != r.segments.end() && it->second.expired()) r.segments.erase(it);
  }
  munmap(base_, size_);
  ::close(fd_);
}

ShmPart Segment::part(IpcKind kind, std::size_t offset) const noexcept {
  ShmPart p;
  p.kind = kind;
  p.fd = fd_;
  p.pid = getpid();
  p.dev = dev_;
  p.ino = ino_;
  p.offset = offset;
  return p;
}

ObjectLayout layout_object(std::size_t cursor, std::size_t state_size,
                           std::size_t state_align) noexcept {
  ObjectLayout l{};
  l.header = round_up(cursor, alignof(ObjectHeader));
  std::size_t align = state_align > alignof(ObjectHeader) ? state_align : alignof(ObjectHeader);
  l.state = round_up(l.header + sizeof(ObjectHeader), align);
  l.end = l.state + state_size;
  return l;
}

void* init_object(Segment& seg, const ObjectLayout& at, IpcKind kind, std::uint64_t elem_size,
                  std::uint64_t count) noexcept {
  auto* h = reinterpret_cast<ObjectHeader*>(seg.base() + at.header);
  h->magic = kObjectMagic;
  h->kind = kind;
  h->version = kObjectVersion;
  h->state_offset = static_cast<std::uint32_t>(at.state - at.header);
  h->state_size = at.end - at.state;
  h->elem_size = elem_size;
  h->count = count;
  return seg.base() + at.state;
}

namespace {

bool kind_in(IpcKind kind, std::initializer_list<IpcKind> kinds) {
  for (IpcKind k : kinds)
    if (k == kind) return true;
  return false;
}

std::string kinds_text(std::initializer_list<IpcKind> kinds) {
  std::string s;
  for (IpcKind k : kinds) s += (s.empty() ? "" : " or ") + std::string(ipc_kind_name(k));
  return s;
}

}  // namespace

void expect_kind(const AttachedObject& obj, std::initializer_list<IpcKind> kinds) {
  if (!kind_in(obj.header->kind, kinds))
    throw std::invalid_argument(std::string("attach: expected ") + kinds_text(kinds) +
                                ", the handle names a " + ipc_kind_name(obj.header->kind));
}

std::vector<AttachedObject> attach_handle(const ShmHandle& handle,
                                          std::initializer_list<IpcKind> kinds,
                                          std::size_t min_state_size) {
  if (handle.parts.empty()) throw std::invalid_argument("attach: empty handle");
  if (!kind_in(handle.parts[0].kind, kinds))
    throw std::invalid_argument(std::string("attach: expected ") + kinds_text(kinds) +
                                ", the handle names a " + ipc_kind_name(handle.parts[0].kind));
  std::vector<AttachedObject> out;
  std::vector<SegmentPtr> opened;
  for (const ShmPart& part : handle.parts) {
    SegmentPtr seg;
    for (auto& s : opened)
      if (s->same_file(part)) seg = s;
    if (!seg) {
      seg = Segment::open(part);
      opened.push_back(seg);
    }
    if (part.offset > seg->size() || seg->size() - part.offset < sizeof(ObjectHeader))
      throw std::invalid_argument("attach: offset outside the shared segment");
    auto* h = reinterpret_cast<const ObjectHeader*>(seg->base() + part.offset);
    if (h->magic != kObjectMagic || h->version != kObjectVersion || h->kind != part.kind)
      throw std::invalid_argument(std::string("attach: no ") + ipc_kind_name(part.kind) +
                                  " at that offset of the shared segment");
    if (part.offset + h->state_offset + h->state_size > seg->size())
      throw std::invalid_argument("attach: object extends past the shared segment");
    AttachedObject obj;
    obj.seg = seg;
    obj.offset = part.offset;
    obj.header = h;
    obj.state = seg->base() + part.offset + h->state_offset;
    out.push_back(std::move(obj));
  }
  if (out[0].header->state_size < min_state_size)
    throw std::invalid_argument("attach: shared state too small for this type");
  return out;
}

}  // namespace concur::detail
