// concur/process.hpp: Python's multiprocessing.Process, current_process() and
// parent_process().
//
// What it offers and guarantees:
// - Process p(target, args...); p.start(); p.join(); with Python's members: join(timeout),
//   is_alive, pid, exitcode, terminate (SIGTERM), kill (SIGKILL), name, daemon, sentinel,
//   close. The target is a function pointer or a lambda without captures (as for the
//   process pools: the child re-creates it from its address or type); the arguments are
//   encoded when the Process is constructed (a snapshot, like std::thread's copies) with
//   concur's serialization layer, and compile errors name an argument type that cannot be.
// - Arguments may be concur's shared objects: Queue, SimpleQueue, JoinableQueue,
//   Connection, Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier,
//   Value, Array, SharedMemory. The child's copies are the same objects, under every start
//   method: their descriptors travel with the child's hand-shake
//   (detail/process_handoff.hpp), so the child attaches even if the parent has exited.
//   Pass a Connection with std::move to give it away (see concur/connection.hpp).
// - Start methods as Python's and the process pools' (detail/process_launcher.hpp):
//   forkserver (default), spawn, fork. With fork the child is a copy of the program as it
//   is when start() is called (a zygote is forked then and forks the child), as in Python.
// - Exit codes as Python's: 0 when the target returns, 1 when it throws (the exception is
//   printed on stderr as "Process <name>:" and its type and what()), n after std::exit(n)
//   or _exit(n) in the target, minus the signal number when a signal killed it.
//   exitcode() is empty while the process runs (and in the rare case that its status was
//   lost with the fork server).
// - Lifetime: no zombies, no leaked descriptors. A Process object destroyed while its
//   process runs terminates it (SIGTERM, then SIGKILL after a grace second) and reaps it:
//   unlike Python, which joins non-daemonic children at exit, a C++ scope never waits on
//   a child by surprise and never leaves one behind. join() before the end of the scope
//   to let it finish. Once the process has been reaped (join, or is_alive/exitcode seeing
//   it gone) every resource is released; only the exit status is kept.
// - daemon (Python's semantics where they apply): a daemonic process may not start
//   processes of its own (InvalidStateError), and it is terminated (SIGTERM) when its
//   parent process ends, even by a crash (a watchdog thread in the child waits on the
//   parent's pidfd). Non-daemonic children outlive a parent that crashes, as in Python.
// - Subclass form, for Python's `class MuchCPU(Process): def run(self)`: derive from
//   ProcessSubclass<Derived> and override run(). The child default-constructs its own
//   Derived, restores the fields a cereal serialize() names (none without one), and calls
//   run(). The idiomatic C++ equivalent is a function target with arguments.
// - current_process() describes this process ("MainProcess" in the program itself, the
//   Process's name in a child); parent_process() the parent of a Process (nothing in the
//   main process), with is_alive()/join() on the parent's pidfd.
// - Errors: start() twice, join() before start(), a method after close() or close() of
//   a running process throw InvalidStateError (Python: AssertionError / ValueError).
//   OSError when the process cannot be started.
// - Thread safety: the members may be called from several threads (one may block in
//   join() while another calls terminate()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/connection.hpp"
#include "concur/detail/mp_codec.hpp"
#include "concur/detail/mp_process.hpp"
#include "concur/detail/process_launcher.hpp"
#include "concur/queue.hpp"

namespace concur {

// How a Process is made (outside the class so `= {}` defaults work with designated
// initializers: Process({.name = "worker", .daemon = true}, f, 1)).
struct ProcessOptions {
  // The process's name; empty: Python's "Process-N" ("Process-N:M" in a child process).
  std::string name{};
  // Python's daemon flag; empty: inherited from the creating process (false in main).
  std::optional<bool> daemon{};
  // How the child is started.
  StartMethod start_method = StartMethod::forkserver;
};

namespace detail {
class ProcessImpl;
}

// multiprocessing.Process: a function running in a child process.
class Process {
 public:
  using Options = ProcessOptions;

  // A process that will run target(args...) (not started yet).
  template <class F, class... Args>
    requires(!std::is_same_v<std::remove_cvref_t<F>, ProcessOptions>)
  explicit Process(F&& target, Args&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target), std::forward<Args>(args)...) {}
  // The same with a name, daemon flag or start method.
  template <class F, class... Args>
  Process(ProcessOptions options, F&& target, Args&&... args)
      : Process(std::move(options), detail::prepare_call(target, args...)) {
    (detail::give_away(std::forward<Args>(args)), ...);
  }

  // Takes over the process (the moved-from object is closed).
  Process(Process&& other) noexcept;
  // Terminates and reaps this one if it runs, then takes over `other`.
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Terminates and reaps the process if it still runs (see the note at the top).
  virtual ~Process();

  // Starts the child. InvalidStateError when started before or closed, or when the
  // calling process is daemonic; OSError when it cannot be started.
  void start();
  // Waits until the process ends. InvalidStateError before start().
  void join();
  // Waits at most `timeout`; true when the process has ended (Python returns None; check
  // exitcode() there).
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  // Whether the process has started and not ended (reaps it when it has).
  bool is_alive();
  // The child's pid once started.
  std::optional<pid_t> pid() const;
  // Python's exitcode: empty while running (or not started), else the exit code or minus
  // the signal that killed it.
  std::optional<int> exitcode();
  // Sends SIGTERM (Python's terminate); nothing once the process has ended.
  // InvalidStateError before start().
  void terminate();
  // Sends SIGKILL (Python's kill); nothing once the process has ended.
  void kill();
  // Releases everything; InvalidStateError while the process runs. Later calls (but
  // name/exitcode) throw InvalidStateError. Idempotent.
  void close();

  // The name ("Process-N" unless given).
  const std::string& name() const;
  // Renames it (also before start(): the child sees the new name).
  void set_name(std::string name);
  // Python's daemon flag.
  bool daemon() const;
  // Sets the daemon flag; InvalidStateError after start().
  void set_daemon(bool daemon);
  // The start method it uses.
  StartMethod start_method() const;
  // A descriptor readable once the process has ended (Python's sentinel: the pidfd),
  // valid until the process is reaped; -1 before start() and after.
  int sentinel() const;

 protected:
  // For ProcessSubclass: the state is encoded at start() by `encode_self`.
  struct SubclassTag {};
  Process(SubclassTag, ProcessOptions options, void (*encode_self)(detail::Writer&, const Process&),
          std::vector<std::byte> entry);

 private:
  Process(ProcessOptions options, detail::PreparedCall call);
  bool join_for(std::chrono::nanoseconds timeout);
  detail::ProcessImpl& impl(const char* op) const;
  // In the child of a ProcessSubclass: this object is the running process itself.
  void adopt_self(const std::string& name, bool daemon) noexcept;
  template <class D>
  friend void detail::subclass_entry(detail::Reader&, detail::Writer&);

  std::unique_ptr<detail::ProcessImpl> impl_;
};

// Python's `class X(Process): def run(self): ...`: derive from ProcessSubclass<X> and
// override run(). X must be default-constructible; the fields its cereal serialize()
// names (if it has one) are copied into the child's X at start().
template <class Derived>
class ProcessSubclass : public Process {
 public:
  // A process that will run Derived::run() (not started yet).
  explicit ProcessSubclass(ProcessOptions options = {})
      : Process(SubclassTag{}, std::move(options), &detail::encode_subclass<Derived>,
                entry_bytes()) {}

  // What the child process does.
  virtual void run() = 0;

 private:
  static std::vector<std::byte> entry_bytes() {
    detail::Writer w;
    detail::RemoteEntry e = &detail::subclass_entry<Derived>;
    detail::encode_code_address(w, reinterpret_cast<std::uintptr_t>(e));
    auto b = w.bytes();
    return {b.begin(), b.end()};
  }
};

// What current_process() returns: this process's identity.
class CurrentProcess {
 public:
  // "MainProcess" in the program itself, the Process's name in a child.
  const std::string& name() const noexcept;
  // Renames this process (Python allows current_process().name = ...).
  void set_name(std::string name);
  // getpid().
  pid_t pid() const noexcept;
  // Python's ident: the pid.
  pid_t ident() const noexcept { return pid(); }
  // Whether this process is a daemonic Process.
  bool daemon() const noexcept;
  // Python's _identity: () in main, (N,) in Process-N, (N, M) in its child M.
  const std::vector<std::uint32_t>& identity() const noexcept;
};

// What parent_process() returns: the process that started this one.
class ParentProcess {
 public:
  // The parent's name ("MainProcess" when it is the program itself).
  const std::string& name() const noexcept { return name_; }
  // The parent's pid.
  pid_t pid() const noexcept { return pid_; }
  // Whether the parent still runs.
  bool is_alive() const;
  // Waits until the parent ends.
  void join() const;
  // Waits at most `timeout`; true when the parent has ended.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) const {
    return join_ms(std::chrono::ceil<std::chrono::milliseconds>(timeout).count());
  }
  // The parent's pidfd (readable once it ended); -1 when it could not be opened.
  int sentinel() const noexcept { return pidfd_; }

 private:
  friend std::optional<ParentProcess> parent_process();
  ParentProcess(std::string name, pid_t pid, int pidfd) : name_(std::move(name)), pid_(pid), pidfd_(pidfd) {}
  bool join_ms(long long ms) const;
  std::string name_;
  pid_t pid_;
  int pidfd_;  // owned by the process-wide record, valid for the process's life
};

// This process (Python's multiprocessing.current_process()).
CurrentProcess& current_process();
// The parent of this Process; empty in the main program (Python returns None).
std::optional<ParentProcess> parent_process();

namespace detail {

template <class D>
void subclass_entry(Reader& in, Writer&) {
  static_assert(std::is_default_constructible_v<D>,
                "concur: a ProcessSubclass must be default-constructible: the child process "
                "builds its own object, then restores the fields its serialize() names");
  ChildStart start(in);
  Reader& body = start.body(in);
  std::optional<D> d;
  try {
    handoff::ImportScope scope(start.importer());
    d.emplace();
    if constexpr (has_state_v<D>) with_in_archive<D>(body, [&](CerealIn& ar) { ar(*d); });
    if (body.remaining() != 0)
      throw SerializationError("concur: unexpected bytes after the state of a Process subclass");
  } catch (...) {
    child_failed_to_start(std::current_exception());
  }
  start.arguments_decoded();
  static_cast<Process&>(*d).adopt_self(start.name(), start.daemon());
  SubclassRun<D> run{&*d};
  child_run(&SubclassRun<D>::run, &run);
}

}  // namespace detail

}  // namespace concur
