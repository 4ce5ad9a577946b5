// Descriptors that travel with a concur::Process's arguments.
//
// A Queue, Connection, Lock, Value... passed to a Process is, underneath, an open file (a
// memfd or a socket). Whatever the start method, the child does not simply inherit it:
// spawn re-executes the program, forkserver forks from a server that never had it, and
// the fork method forks from a zygote that closes every library descriptor. So the files
// travel explicitly:
//
//  - Parent. While a Process encodes its call, an Exporter is active on that thread. A
//    codec that meets a descriptor calls export_fd(): the Exporter keeps a duplicate (so
//    the object may die before start()) and returns an FdRef for the message. Up to
//    kMaxPassed files go with the bootstrap hand-shake as SCM_RIGHTS; the rest (memfds and
//    pipes; not sockets) are reopened by the child through /proc/<parent>/fd/<dup>, which
//    works while the parent lives (the Process keeps the duplicates until the child is
//    reaped).
//  - Child. An Importer is active while the child decodes its arguments. It knows the
//    identity (st_dev, st_ino) of every passed file, in order, and finds the received
//    descriptors: handed over by the engine through adopt_received_fds() when the engine
//    calls it, otherwise by looking, among the descriptors the library registered in this
//    process, for those identities (received descriptors are registered, inherited user
//    descriptors are not). A codec takes the received descriptor (ownership: closing the
//    object in the child closes the file) or peeks at its number (memfd objects dup it);
//    what nobody took is closed once the arguments are decoded.
//  - No Exporter (a value put in a Queue, a process pool task): memfd objects are named
//    by (pid, fd, dev, ino) and reopened through /proc, which needs the sender alive and
//    holding the object. (A Connection refuses to travel that way: its read-ahead buffer
//    and its EOF semantics belong to one holder.)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "concur/detail/process_fd.hpp"

namespace concur::detail::handoff {

// Which file a descriptor is open on, and how (the two ends of a pipe are one inode).
struct FileId {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  std::uint32_t access = 0;  // O_RDONLY, O_WRONLY or O_RDWR
  std::uint32_t reserved = 0;
  friend bool operator==(const FileId&, const FileId&) = default;
};
// The identity of fd; throws OSError.
FileId file_id(int fd);

// An exported descriptor as it appears in a message (plain data).
struct FdRef {
  std::int32_t slot = -1;  // index among the descriptors passed with the hand-shake; -1: none
  std::int32_t pid = 0;    // the exporting process, for /proc/<pid>/fd/<fd>
  std::int32_t fd = -1;    // the descriptor number there
  std::uint32_t access = 0;  // as FileId
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};

// The most descriptors a hand-shake carries (the engine's send_message limit).
inline constexpr std::size_t kMaxPassed = 16;

// Parent side: collects what a Process's arguments need.
class Exporter {
 public:
  Exporter() = default;
  Exporter(Exporter&&) noexcept = default;
  Exporter& operator=(Exporter&&) noexcept = default;

  // Exports fd (kept open here as a duplicate). must_pass: the file cannot be reopened
  // through /proc (a socket), so it must travel with the hand-shake; throws
  // std::length_error when kMaxPassed files are taken already. The same file opened the
  // same way twice (one object passed twice) takes one slot.
  FdRef add(int fd, bool must_pass);
  // Descriptors to send with the hand-shake, in slot order.
  std::vector<int> passed_fds() const;
  // Their identities, in slot order (the child looks for these).
  const std::vector<FileId>& passed_ids() const noexcept { return ids_; }
  // After the hand-shake the kernel holds the passed files: drop our duplicates.
  void release_passed() noexcept;
  // Drops everything (the child has attached or is gone).
  void clear() noexcept;

 private:
  std::vector<UniqueFd> passed_;
  std::vector<FileId> ids_;
  std::vector<UniqueFd> kept_;  // reopened by the child through /proc
};

// The Exporter active on this thread, or null.
Exporter* exporter() noexcept;
// Makes `e` the active Exporter for a scope.
class ExportScope {
 public:
  explicit ExportScope(Exporter& e) noexcept;
  ~ExportScope();
  ExportScope(const ExportScope&) = delete;
  ExportScope& operator=(const ExportScope&) = delete;

 private:
  Exporter* prev_;
};

// Exports fd through the active Exporter, or (none active) names it by this process's
// pid and descriptor number.
FdRef export_fd(int fd, bool must_pass);

// Child side: the descriptors that came with the hand-shake.
class Importer {
 public:
  // Finds the received descriptors for `expected` (see the note at the top).
  explicit Importer(std::vector<FileId> expected);
  ~Importer();
  Importer(const Importer&) = delete;
  Importer& operator=(const Importer&) = delete;

  // The received descriptor for ref, or -1; it stays owned by the Importer.
  int peek(const FdRef& ref) const noexcept;
  // Ownership of the received descriptor for ref (a duplicate when it was taken already),
  // or an invalid UniqueFd when it was not received.
  UniqueFd take(const FdRef& ref);
  // Closes the received descriptors nobody took.
  void close_unclaimed() noexcept;

 private:
  struct Slot {
    FileId id;
    int fd = -1;
    bool taken = false;
  };
  std::vector<Slot> slots_;
};

// The Importer active on this thread, or null.
Importer* importer() noexcept;
// Makes `i` the active Importer for a scope.
class ImportScope {
 public:
  explicit ImportScope(Importer& i) noexcept;
  ~ImportScope();
  ImportScope(const ImportScope&) = delete;
  ImportScope& operator=(const ImportScope&) = delete;

 private:
  Importer* prev_;
};

// A descriptor for ref in this process: the received one (taken) when an Importer has
// it, else one reopened through /proc/<pid>/fd/<fd> with `open_flags` (OSError when
// that fails or finds another file). Never the caller's to share: it is a new descriptor.
UniqueFd import_fd(const FdRef& ref, int open_flags);

// Hook for the process engine's call_once role: the descriptors received with the Hello,
// in order, handed over before the call is decoded. Optional: without it the Importer
// finds them by identity.
void adopt_received_fds(std::vector<UniqueFd> fds) noexcept;

}  // namespace concur::detail::handoff
