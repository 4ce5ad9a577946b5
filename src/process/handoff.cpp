// Descriptors that travel with a Process's arguments (detail/process_handoff.hpp).
#include "concur/detail/process_handoff.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "concur/errors.hpp"

namespace concur::detail::handoff {

namespace {

thread_local Exporter* t_exporter = nullptr;
thread_local Importer* t_importer = nullptr;

// What adopt_received_fds() was given, until an Importer claims it.
std::mutex g_received_mu;
std::vector<UniqueFd>* g_received = nullptr;
bool g_received_set = false;

UniqueFd dup_cloexec(int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) throw_os_error("dup of a descriptor passed to a process", errno);
  return UniqueFd(d);
}

}  // namespace

FileId file_id(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_os_error("fstat of a descriptor passed to a process", errno);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) throw_os_error("fcntl of a descriptor passed to a process", errno);
  FileId id;
  id.dev = static_cast<std::uint64_t>(st.st_dev);
  id.ino = static_cast<std::uint64_t>(st.st_ino);
  id.access = static_cast<std::uint32_t>(fl & O_ACCMODE);
  return id;
}

// ---------------------------------------------------------------- parent
FdRef Exporter::add(int fd, bool must_pass) {
  FileId id = file_id(fd);
  FdRef ref;
  ref.pid = ::getpid();
  ref.dev = id.dev;
  ref.ino = id.ino;
  ref.access = id.access;
  for (std::size_t i = 0; i < ids_.size(); ++i) {
    if (ids_[i] == id) {  // the same file twice (one object passed twice): one slot
      ref.slot = static_cast<std::int32_t>(i);
      ref.fd = passed_[i].get();
      return ref;
    }
  }
  for (const UniqueFd& k : kept_) {
    if (file_id(k.get()) == id) {
      ref.fd = k.get();
      return ref;
    }
  }
  UniqueFd dup = dup_cloexec(fd);
  if (passed_.size() < kMaxPassed) {
    ref.slot = static_cast<std::int32_t>(passed_.size());
    ref.fd = dup.get();
    passed_.push_back(std::move(dup));
    ids_.push_back(id);
    return ref;
  }
  if (must_pass)
    throw std::length_error("concur: a Process can receive at most " +
                            std::to_string(kMaxPassed) +
                            " descriptors with its hand-shake, and this one cannot be "
                            "reopened another way");
  ref.fd = dup.get();
  kept_.push_back(std::move(dup));
  return ref;
}

std::vector<int> Exporter::passed_fds() const {
  std::vector<int> out;
  out.reserve(passed_.size());
  for (const UniqueFd& f : passed_) out.push_back(f.get());
  return out;
}

void Exporter::release_passed() noexcept { passed_.clear(); }

void Exporter::clear() noexcept {
  passed_.clear();
  ids_.clear();
  kept_.clear();
}

Exporter* exporter() noexcept { return t_exporter; }

ExportScope::ExportScope(Exporter& e) noexcept : prev_(t_exporter) { t_exporter = &e; }
ExportScope::~ExportScope() { t_exporter = prev_; }

FdRef export_fd(int fd, bool must_pass) {
  if (Exporter* e = t_exporter) return e->add(fd, must_pass);
  FileId id = file_id(fd);
  FdRef ref;
  ref.pid = ::getpid();
  ref.fd = fd;
  ref.dev = id.dev;
  ref.ino = id.ino;
  ref.access = id.access;
  return ref;
}

// ---------------------------------------------------------------- child
Importer::Importer(std::vector<FileId> expected) {
  slots_.resize(expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) slots_[i].id = expected[i];
  if (expected.empty()) return;

  std::vector<UniqueFd> given;
  bool have_given = false;
  {
    std::lock_guard lock(g_received_mu);
    if (g_received_set) {
      given = std::move(*g_received);
      delete g_received;
      g_received = nullptr;
      g_received_set = false;
      have_given = true;
    }
  }
  if (have_given) {
    // The engine handed them over in slot order; check rather than trust the order.
    for (UniqueFd& f : given) {
      FileId id;
      try {
        id = file_id(f.get());
      } catch (const OSError&) {
        continue;
      }
      for (Slot& s : slots_) {
        if (s.fd < 0 && s.id == id) {
          s.fd = f.release();
          break;
        }
      }
    }
    return;  // the rest of `given` (unexpected extras) closes here
  }

  // Not handed over: the received descriptors are open (and registered as the library's)
  // at numbers nobody told us; recognise them by identity.
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return;
  int own = ::dirfd(dir);
  std::vector<int> candidates;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd > 2 && fd != own && is_library_fd(fd)) candidates.push_back(fd);
  }
  ::closedir(dir);
  for (int fd : candidates) {
    FileId id;
    try {
      id = file_id(fd);
    } catch (const OSError&) {
      continue;
    }
    for (Slot& s : slots_) {
      if (s.fd < 0 && s.id == id) {
        s.fd = fd;
        break;
      }
    }
  }
}

Importer::~Importer() { close_unclaimed(); }

int Importer::peek(const FdRef& ref) const noexcept {
  if (ref.slot < 0 || static_cast<std::size_t>(ref.slot) >= slots_.size()) return -1;
  const Slot& s = slots_[static_cast<std::size_t>(ref.slot)];
  if (s.fd < 0 || s.id.dev != ref.dev || s.id.ino != ref.ino || s.id.access != ref.access)
    return -1;
  return s.fd;
}

UniqueFd Importer::take(const FdRef& ref) {
  int fd = peek(ref);
  if (fd < 0) return UniqueFd();
  Slot& s = slots_[static_cast<std::size_t>(ref.slot)];
  if (s.taken) return dup_cloexec(fd);
  s.taken = true;
  return UniqueFd(fd);
}

void Importer::close_unclaimed() noexcept {
  for (Slot& s : slots_) {
    if (s.fd >= 0 && !s.taken) {
      unregister_library_fd(s.fd);
      ::close(s.fd);
    }
    s.fd = -1;
    s.taken = true;
  }
}

Importer* importer() noexcept { return t_importer; }

ImportScope::ImportScope(Importer& i) noexcept : prev_(t_importer) { t_importer = &i; }
ImportScope::~ImportScope() { t_importer = prev_; }

UniqueFd import_fd(const FdRef& ref, int open_flags) {
  if (Importer* i = t_importer) {
    UniqueFd fd = i->take(ref);
    if (fd) return fd;
  }
  std::string path = "/proc/" + std::to_string(ref.pid) + "/fd/" + std::to_string(ref.fd);
  int fd = ::open(path.c_str(), open_flags | O_CLOEXEC);
  if (fd < 0)
    throw_os_error("cannot reopen a descriptor passed to this process (" + path + ")", errno);
  UniqueFd out(fd);
  FileId id = file_id(fd);
  if (id.dev != ref.dev || id.ino != ref.ino || id.access != ref.access)
    throw OSError("concur: " + path + " is no longer the file that was passed (its process gone?)",
                  ESTALE);
  return out;
}

void adopt_received_fds(std::vector<UniqueFd> fds) noexcept {
  try {
    std::lock_guard lock(g_received_mu);
    if (!g_received) g_received = new std::vector<UniqueFd>;
    *g_received = std::move(fds);
    g_received_set = true;
  } catch (...) {
  }
}

}  // namespace concur::detail::handoff
