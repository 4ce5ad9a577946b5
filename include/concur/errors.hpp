// concur/errors.hpp: every error the library raises.
//
// All derive from concur::Error, itself a std::runtime_error, so one `catch (const
// concur::Error&)` sees everything concur reports while the standard exceptions a task
// throws reach the caller with their own type. The names follow Python's
// concurrent.futures and multiprocessing.
#pragma once

#include <stdexcept>
#include <string>

namespace concur {

// Base of every concur error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The future was cancelled before it produced a result.
class CancelledError : public Error {
 public:
  CancelledError() : Error("future was cancelled") {}
  using Error::Error;
};

// A wait with a timeout ran out of time.
class TimeoutError : public Error {
 public:
  TimeoutError() : Error("timed out") {}
  using Error::Error;
};

// An operation is not allowed in the object's current state (e.g. setting the result of
// a future that already has one).
class InvalidStateError : public Error {
 public:
  using Error::Error;
};

// submit() on an executor after shutdown() (Python raises RuntimeError here).
class ShutdownError : public Error {
 public:
  ShutdownError() : Error("cannot schedule new futures after shutdown") {}
  using Error::Error;
};

// The executor can no longer run work: an initializer failed or a worker died.
class BrokenExecutor : public Error {
 public:
  using Error::Error;
};
class BrokenThreadPool : public BrokenExecutor {
 public:
  using BrokenExecutor::BrokenExecutor;
};
class BrokenProcessPool : public BrokenExecutor {
 public:
  using BrokenExecutor::BrokenExecutor;
};

// A worker process died while running this task (policy OnWorkerDeath::replace_worker and
// multiprocessing::Pool). Carries how it died.
class WorkerDiedError : public Error {
 public:
  WorkerDiedError(const std::string& message, int exit_code, int signal_number)
      : Error(message), exit_code_(exit_code), signal_(signal_number) {}
  // The worker's exit status, or -1 when it was killed by a signal.
  int exit_code() const noexcept { return exit_code_; }
  // The signal that killed the worker, or 0 when it exited.
  int signal_number() const noexcept { return signal_; }

 private:
  int exit_code_;
  int signal_;
};

// An exception thrown in another process whose type has no registered counterpart here.
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, std::string remote_what, std::string remote_trace)
      : Error(type_name + ": " + remote_what +
              (remote_trace.empty() ? std::string() : "\n" + remote_trace)),
        type_name_(std::move(type_name)),
        remote_what_(std::move(remote_what)),
        remote_trace_(std::move(remote_trace)) {}
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& remote_what() const noexcept { return remote_what_; }
  const std::string& remote_trace() const noexcept { return remote_trace_; }

 private:
  std::string type_name_, remote_what_, remote_trace_;
};

// A value could not be encoded or a message could not be decoded (corrupt, truncated,
// oversized, or of an unexpected type).
class SerializationError : public Error {
 public:
  using Error::Error;
};

// The other end of a connection or queue has gone (Python's EOFError).
class EOFError : public Error {
 public:
  EOFError() : Error("connection closed by peer") {}
  using Error::Error;
};

}  // namespace concur

// --- synchronisation (issue 4) ---
namespace concur {

// A Lock or RLock (also the lock under a Condition, Barrier or Value/Array) whose holder,
// a process or a thread, died while holding it. The protected data may be half-updated.
// Reported once, to the first acquirer after the death; the lock is already consistent
// again, so the next acquire works. Held or not on throw: see the operation's doc.
class AbandonedLockError : public Error {
 public:
  explicit AbandonedLockError(const std::string& message, long owner_tid = 0)
      : Error(message), owner_tid_(owner_tid) {}
  // Thread id (gettid) of the holder that died, or 0 when unknown.
  long owner_tid() const noexcept { return owner_tid_; }

 private:
  long owner_tid_;
};

// Releasing (or waiting/notifying on) a lock the calling thread does not hold, or
// blocking on a non-recursive Lock the calling thread already holds (a sure deadlock).
// Python raises RuntimeError here.
class LockOwnershipError : public Error {
 public:
  using Error::Error;
};

// BoundedSemaphore::release() beyond the initial value (Python's ValueError), or a
// Semaphore released past its maximum count.
class SemaphoreOverReleaseError : public Error {
 public:
  SemaphoreOverReleaseError() : Error("Semaphore released too many times") {}
  using Error::Error;
};

// A Barrier was aborted, reset while waited on, timed out, or its action threw
// (Python's threading.BrokenBarrierError).
class BrokenBarrierError : public Error {
 public:
  BrokenBarrierError() : Error("barrier is broken") {}
  using Error::Error;
};

// An operating-system call failed (Python's OSError); carries errno.
class OSError : public Error {
 public:
  OSError(const std::string& message, int error_number)
      : Error(message), errno_(error_number) {}
  // The errno value the call failed with.
  int error_number() const noexcept { return errno_; }

 private:
  int errno_;
};

// A named resource (e.g. SharedMemory by name) does not exist (ENOENT).
class FileNotFoundError : public OSError {
 public:
  using OSError::OSError;
};

// A named resource to be created exists already (EEXIST).
class FileExistsError : public OSError {
 public:
  using OSError::OSError;
};

}  // namespace concur

// --- queues and processes (issue 4) ---
namespace concur {

// put_nowait() / put(timeout) on a Queue with no room (Python's queue.Full).
class Full : public Error {
 public:
  Full() : Error("queue is full") {}
  using Error::Error;
};

// get_nowait() / get(timeout) on a Queue with nothing in it (Python's queue.Empty; a
// timed-out get raises it too, as in Python, not TimeoutError).
class Empty : public Error {
 public:
  Empty() : Error("queue is empty") {}
  using Error::Error;
};

// JoinableQueue::task_done() called more times than items were put (Python's ValueError).
class TaskDoneError : public Error {
 public:
  TaskDoneError() : Error("task_done() called too many times") {}
  using Error::Error;
};

// Writing to a Connection whose other end is closed (Python's BrokenPipeError); carries
// EPIPE or ECONNRESET.
class BrokenPipeError : public OSError {
 public:
  using OSError::OSError;
};

}  // namespace concur
