// concur/detail/ipc_segment.hpp: the shared memory every process-shared primitive lives in.
//
// A Segment is one memfd (O_CLOEXEC, sealed against resizing) mapped MAP_SHARED. Because
// the memory is MAP_SHARED it is inherited across fork, and because it has a descriptor it
// can also be handed to a process started by spawn/forkserver. Inside a segment each
// object sits at an offset behind a 64-byte ObjectHeader that names its kind, so attaching
// the wrong kind of handle fails loudly instead of corrupting memory.
//
// ---- The export/import hook (for the process engine) ----------------------------------
// Every primitive (Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier,
// Value<T>, Array<T>) has
//     detail::ShmHandle handle() const;             // in the owning process
//     static X attach(const detail::ShmHandle&);     // in the receiving process
// A ShmHandle is plain data (a vector of ShmPart: kind, fd, pid, dev, ino, offset), so the
// serializer can write it field by field. A part names a segment by the descriptor number
// it has in the exporting process `pid` plus the file identity (dev, ino). attach() finds
// the memory, in this order:
//   1. `fd` is open in the attaching process and is the same file (dev, ino): the engine
//      passed the descriptor (inherited at the same number with CLOEXEC cleared, or received
//      with SCM_RIGHTS and written back into part.fd);
//   2. otherwise /proc/<pid>/fd/<fd> of the exporting process, which works while that
//      process is alive and runs as the same user (no descriptor passing needed).
// attach() opens its own descriptor (dup or open), or reuses the mapping when this process
// already maps that segment, so the engine may close the one it passed afterwards. Under
// fork nothing is needed: copies of the objects in the child refer to the same memory.
// ShmHandle is a std::vector of trivially copyable parts, which concur/serialize.hpp
// encodes as it is. A handle is only as good as the exporting process's descriptor: the
// exporter must keep its object alive until the receiver has attached.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

namespace concur::detail {

// Which primitive a shared object is; checked by attach().
enum class IpcKind : std::uint32_t {
  lock = 1,
  rlock,
  semaphore,
  bounded_semaphore,
  event,
  condition,
  barrier,
  value,
  array,
};

// Human-readable name of a kind, for error messages.
const char* ipc_kind_name(IpcKind kind) noexcept;

// One shared object: which segment (by descriptor and file identity) and where in it.
struct ShmPart {
  IpcKind kind{};
  int fd = -1;              // descriptor number in process `pid`
  pid_t pid = 0;            // the exporting process
  std::uint64_t dev = 0;    // st_dev of the memfd, to recognise it after passing
  std::uint64_t ino = 0;    // st_ino of the memfd
  std::uint64_t offset = 0; // where the object's header starts in the segment
};

// What a primitive exports: its own part first, then the parts it depends on (the lock of
// a Condition, Value or Array).
struct ShmHandle {
  std::vector<ShmPart> parts;
};

// A memfd and its MAP_SHARED mapping; shared in-process through std::shared_ptr so copies
// of a primitive are cheap handles to the same memory.
class Segment {
 public:
  // A fresh zero-filled segment of at least `size` bytes; `label` shows in /proc/*/fd.
  static std::shared_ptr<Segment> create(std::size_t size, const char* label);
  // The segment a part names (see the hook above); throws concur::OSError if unreachable.
  static std::shared_ptr<Segment> open(const ShmPart& part);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // First byte of the mapping (page-aligned).
  std::byte* base() const noexcept { return base_; }
  // Mapped length in bytes.
  std::size_t size() const noexcept { return size_; }
  // This process's descriptor for the memfd.
  int fd() const noexcept { return fd_; }
  // Whether this is the file a part names.
  bool same_file(const ShmPart& part) const noexcept {
    return part.dev == dev_ && part.ino == ino_;
  }
  // A part naming the object at `offset`, valid for export from this process.
  ShmPart part(IpcKind kind, std::size_t offset) const noexcept;

 private:
  Segment(int fd, std::byte* base, std::size_t size, std::uint64_t dev, std::uint64_t ino)
      : fd_(fd), base_(base), size_(size), dev_(dev), ino_(ino) {}
  int fd_;
  std::byte* base_;
  std::size_t size_;
  std::uint64_t dev_, ino_;
};
using SegmentPtr = std::shared_ptr<Segment>;

inline constexpr std::uint32_t kObjectMagic = 0x6f636e63;  // "cnco"
inline constexpr std::uint32_t kObjectVersion = 1;

// Precedes every shared object; the state follows at `state_offset` from the header.
struct alignas(64) ObjectHeader {
  std::uint32_t magic;
  IpcKind kind;
  std::uint32_t version;
  std::uint32_t state_offset;  // from the header, so over-aligned element types fit
  std::uint64_t state_size;    // bytes of state (for Value/Array: of the elements)
  std::uint64_t elem_size;     // Value/Array: sizeof(T); 0 otherwise
  std::uint64_t count;         // Array: number of elements; Value: 1
};

// Where the header and the state of an object go, for planning a segment.
struct ObjectLayout {
  std::size_t header;  // offset of the ObjectHeader
  std::size_t state;   // offset of the state
  std::size_t end;     // first byte after the state
};
// Lays out an object at or after `cursor`.
ObjectLayout layout_object(std::size_t cursor, std::size_t state_size,
                           std::size_t state_align) noexcept;

// Writes the header of a new object and returns its state (zero-filled memory).
void* init_object(Segment& seg, const ObjectLayout& at, IpcKind kind,
                  std::uint64_t elem_size = 0, std::uint64_t count = 0) noexcept;

// An attached object: the segment that keeps it alive and its state.
struct AttachedObject {
  SegmentPtr seg;
  std::size_t offset = 0;  // of the header
  const ObjectHeader* header = nullptr;
  void* state = nullptr;
};

// Opens every part of `handle` (each segment once) and checks that part 0 is one of
// `kinds`; throws std::invalid_argument for a malformed handle or the wrong kind.
std::vector<AttachedObject> attach_handle(const ShmHandle& handle,
                                          std::initializer_list<IpcKind> kinds,
                                          std::size_t min_state_size);
// Checks that an attached dependency (part i > 0) is one of `kinds`.
void expect_kind(const AttachedObject& obj, std::initializer_list<IpcKind> kinds);

// The calling thread's kernel thread id (cached; refreshed in a forked child).
pid_t current_tid() noexcept;

}  // namespace concur::detail
