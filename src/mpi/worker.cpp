// The worker side of an MPI pool: a copy of the program started by MPI_Comm_spawn with
// kWorkerFlag is taken over before main() runs (as the spawn start method's copies are),
// shakes hands, runs the initializer, then runs calls until told to exit. The calls run
// through the same run_remote_call as a process pool's worker.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include "concur/detail/process_launcher.hpp"
#include "concur/detail/process_transport.hpp"
#include "concur/detail/remote_call.hpp"
#include "concur/errors.hpp"
#include "mpi/mpi_env.hpp"
#include "mpi/protocol.hpp"
#include "mpi/shared_blocks.hpp"
#include "process/internal.hpp"

namespace concur::detail {

// Referenced by MPIPoolExecutor's constructor so that a static library keeps this file.
volatile int mpi_worker_anchor = 0;

namespace {

using namespace mpi;

bool started_as_worker() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string program, first;
  return std::getline(in, program, '\0') && std::getline(in, first, '\0') &&
         first == kWorkerFlag;
}

[[noreturn]] void fail(const std::string& what) {
  std::string text = "concur: MPI worker: " + what + "\n";
  emit_diagnostic(text.c_str());
  std::fflush(nullptr);
  _exit(kExitBootstrapFailed);
}

// The next message from the parent. Polls (MPI has no descriptor to sleep on) with a
// back-off, so an idle worker costs next to no CPU: spins for 100 us after the last
// message, then sleeps 10 us, doubling up to 1 ms.
Received receive(MPI_Comm parent) {
  const std::uint64_t spin_until = monotonic_ns() + 100'000;
  long nap_ns = 10'000;
  for (;;) {
    Received m;
    if (try_receive(parent, 0, MPI_ANY_TAG, m)) return m;
    if (monotonic_ns() < spin_until) {
      ::sched_yield();
      continue;
    }
    timespec ts{0, nap_ns};
    ::nanosleep(&ts, nullptr);
    nap_ns = std::min(nap_ns * 2, 1'000'000L);
  }
}

void send(MPI_Comm parent, int tag, std::span<const std::byte> bytes) {
  int rc = MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, 0, tag, parent);
  if (rc != MPI_SUCCESS) fail("sending to the parent failed: " + mpi_error_text(rc));
}

// Says "alive" to the parent every `interval` from a thread of its own, so that a task
// running for hours does not look like a dead worker on another host. Needs
// MPI_THREAD_MULTIPLE (the worker's main thread talks to the parent meanwhile).
class Heartbeat {
 public:
  void start(MPI_Comm parent, std::chrono::milliseconds interval) {
    thread_ = std::thread([this, parent, interval] {
      while (!stop_.load(std::memory_order_acquire)) {
        MPI_Send(nullptr, 0, MPI_BYTE, 0, kTagBeat, parent);
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, interval, [this] { return stop_.load(std::memory_order_acquire); });
      }
    });
  }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stop_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};
Heartbeat g_heartbeat;

[[noreturn]] void leave(MPI_Comm parent) {
  g_heartbeat.stop();
  MPI_Comm_disconnect(&parent);
  MPI_Finalize();
  std::fflush(nullptr);
  _exit(0);
}

[[noreturn]] void run_mpi_worker() {
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    fail("MPI_Init_thread failed");
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  if (parent == MPI_COMM_NULL) fail("started with " + std::string(kWorkerFlag) +
                                    " but not by MPI_Comm_spawn");
  MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);

  Writer w;
  encode(w, std::tuple<std::vector<std::byte>, std::int32_t, std::string>(
                self_build_id(), static_cast<std::int32_t>(::getpid()), processor_name()));
  send(parent, kTagHello, w.bytes());

  Received m = receive(parent);
  if (m.tag == kTagExit) leave(parent);  // refused: a different binary
  if (m.tag != kTagInit) fail("unexpected message before the initializer");
  Reader init(m.bytes());
  auto [initializer, beat_ms, parent_pid, request_fd, response_fd, token] =
      decode<InitMessage>(init);
  // Large blocks through shared memory when the parent offers it and this worker can map
  // both areas (it is really on the parent's host).
  SharedMapping requests, responses;
  const bool mapped = request_fd >= 0 && response_fd >= 0 &&
                      attach_area(requests, parent_pid, request_fd, token) &&
                      attach_area(responses, parent_pid, response_fd, token);
  if (!mapped) requests.reset();
  AreaReader request_reader(&requests);
  ResponseWriter response_writer(&responses);
  Writer out;
  if (!initializer.empty()) {
    Reader in(initializer);
    run_remote_call(in, out);
  }
  std::string why = is_exception_outcome(out.bytes()) ? exception_outcome_text(out.bytes()) : "";
  const bool beating = beat_ms > 0 && provided >= MPI_THREAD_MULTIPLE && why.empty();
  Writer ready;
  encode(ready, ReadyMessage(why, beating, mapped));
  send(parent, kTagReady, ready.bytes());
  if (beating) g_heartbeat.start(parent, std::chrono::milliseconds(beat_ms));

  for (;;) {
    m = receive(parent);
    if (m.tag == kTagExit) leave(parent);
    if (m.tag != kTagCall) fail("unexpected message tag " + std::to_string(m.tag));
    out.clear();
    Reader in(m.bytes(), mapped ? &request_reader : nullptr);
    if (mapped) {
      // The parent decoded the last result before sending this task: its blocks are free.
      response_writer.start_over();
      out.set_oob_sink(&response_writer);
    }
    run_remote_call(in, out);
    m = {};
    // What the task printed goes out before its result (as in a process pool's worker).
    std::fflush(stdout);
    if (out.bytes().size() > static_cast<std::size_t>(INT_MAX)) {
      std::size_t n = out.bytes().size();
      out.clear();
      try {
        throw SerializationError("concur: the result (" + std::to_string(n) +
                                 " bytes encoded) is larger than one MPI message can carry "
                                 "(2 GiB)");
      } catch (...) {
        encode_current_exception(out, 0, "sending the result");
      }
    }
    send(parent, kTagOutcome, out.bytes());
  }
}

// An ordinary constructor, like the spawn start method's hook (src/process/bootstrap.cpp):
// the program's own static objects are initialised before a worker runs their code.
__attribute__((constructor)) void take_over_mpi_worker() {
  if (started_as_worker()) run_mpi_worker();
}

}  // namespace

}  // namespace concur::detail
