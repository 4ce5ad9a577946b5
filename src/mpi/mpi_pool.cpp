// MPIPoolExecutor and its machinery: the library's MPI thread (Runtime) and the pools it
// serves (Pool). Every MPI call of the parent side is made on that one thread, so MPI
// needs no more than MPI_THREAD_FUNNELED and user threads never wait on MPI's locks:
// they encode tasks, queue them and poke the thread.
#include "concur/mpi_pool.hpp"

#include <limits.h>
#include <signal.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "concur/detail/futex.hpp"
#include "concur/detail/process_fd.hpp"
#include "mpi/mpi_env.hpp"
#include "mpi/protocol.hpp"
#include "mpi/shared_blocks.hpp"
#include "process/internal.hpp"

namespace concur::detail {

extern volatile int mpi_worker_anchor;  // src/mpi/worker.cpp

namespace {

using namespace mpi;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_watch_local_workers{true};
std::atomic<bool> g_share_memory{true};
std::atomic<std::int64_t> g_spawn_delay_ms{0};
std::atomic<bool> g_wrong_token{false};

// A pool's parent side. User threads call submit_bulk/shutdown; progress() and the rest
// run on the MPI thread.
class Pool final : public MpiPool {
 public:
  explicit Pool(MpiPoolConfig cfg) : cfg_(std::move(cfg)) {}
  ~Pool() override {
    for (RemoteWork* t : pending_) t->shared_state().release();
  }

  // ------------------------------------------------------------ user threads
  void submit_bulk(std::span<TaskPtr> tasks) override;
  void shutdown(bool wait, bool cancel_futures) override;
  int max_workers() const noexcept override { return cfg_.max_workers; }
  std::vector<MPIWorkerInfo> workers() const override {
    std::lock_guard lock(mu_);
    return infos_;
  }
  bool broken() const noexcept override {
    std::lock_guard lock(mu_);
    return !broken_.empty();
  }
  bool shares_memory() const noexcept override { return shared_; }
  std::size_t queued() const override {
    std::lock_guard lock(mu_);
    return pending_.size();
  }

  // ------------------------------------------------------------ the MPI thread
  void start();                  // spawn, hand-shake, initializer
  void handshake(Clock::time_point deadline);
  void abandon_workers() noexcept;
  bool progress();               // true when something happened
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  bool busy() const noexcept;    // a task is out with a worker
  void add_pidfds(std::vector<pollfd>& out) const;
  // How often the MPI thread must look at this pool while nothing is out: heartbeats
  // arrive and silences must be noticed (0: never).
  std::chrono::milliseconds tick() const noexcept { return closed() ? 0ms : tick_; }
  void stop_now();               // the program is exiting
  // Tasks sent to a worker that died: MPI may still read their payload until it finalises.
  std::vector<RemoteWork*> take_orphans() { return std::exchange(orphans_, {}); }

 private:
  struct Worker {
    MPIWorkerInfo info;
    bool local = false;          // on this host (same processor name)
    UniqueFd pidfd;
    RemoteWork* task = nullptr;  // out with this worker
    MPI_Request send = MPI_REQUEST_NULL;
    bool beating = false;        // sends kTagBeat
    Clock::time_point last_heard{};
    std::unique_ptr<SharedMapping> responses;  // when the pool shares memory
    AreaReader response_reader;
  };

  // Out-of-band request blocks go to the pool's request area (workers on this host).
  struct RequestSink final : OobSink {
    Pool* pool;
    RemoteWork* work;
    RequestSink(Pool* p, RemoteWork* w) : pool(p), work(w) {}
    std::uint64_t put(const void* data, std::size_t n) override;
  };
  void share_memory();  // start(): creates the areas when every worker is on this host
  void free_blocks(RemoteWork* t) noexcept;
  void close_areas() noexcept;

  bool receive_outcomes();
  bool dispatch();
  bool drop_cancelled();
  bool check_deaths();
  bool check_silences();
  void close_channel(bool workers_alive);
  void fail_pool(const std::string& why);
  void complete(RemoteWork* t, std::span<const std::byte> outcome, OobSource* blocks) noexcept;
  static void publish_failure(RemoteWork* t, const std::exception_ptr& e) noexcept;
  void fail(RemoteWork* t, const std::exception_ptr& e) noexcept;  // and release

  const MpiPoolConfig cfg_;
  mutable std::mutex mu_;
  std::condition_variable closed_cv_;
  std::deque<RemoteWork*> pending_;  // mu_
  std::vector<MPIWorkerInfo> infos_;  // mu_
  std::string broken_;                // mu_; not empty once broken
  bool shutdown_ = false;             // mu_
  std::atomic<bool> closed_{false};   // nothing left to do: workers gone, channel closed

  MPI_Comm comm_ = MPI_COMM_NULL;  // the MPI thread's
  std::vector<Worker> workers_;    // the MPI thread's
  std::vector<pollfd> watched_;    // the pidfds of workers_, in order (this host's only)
  std::vector<RemoteWork*> orphans_;  // sent to a worker that died: MPI may still read them
  std::chrono::milliseconds tick_{0};
  Clock::time_point last_sweep_{};  // drop_cancelled()

  bool shared_ = false;  // set by start(), before the first submit
  std::uint64_t token_ = 0;
  // Submitting threads copy into the request area under a shared lock; closing the pool
  // unmaps it under an exclusive one.
  std::shared_mutex area_life_;
  SharedMapping requests_;                      // area_life_
  std::optional<AreaAllocator> request_alloc_;  // area_life_ to read, also alloc_mu_ to use
  std::mutex alloc_mu_;
};

// The library's MPI thread: initialises MPI, runs commands for the pools (start), makes
// progress for every pool, and finalises MPI when the program exits.
class Runtime {
 public:
  static Runtime& get() {
    static Runtime runtime;
    return runtime;
  }

  // Runs fn on the MPI thread and returns its result, or rethrows what it threw.
  template <class F>
  auto call(F fn) -> decltype(fn()) {
    if (on_mpi_thread()) {  // from a done-callback
      if (auto why = stuck(); !why.empty()) throw OSError(why, 0);
      return fn();
    }
    return post(std::move(fn)).get();
  }
  // Queues fn for the MPI thread; its future has fn's result or exception.
  template <class F>
  auto post(F fn) -> std::future<decltype(fn())> {
    if (start_error_) std::rethrow_exception(start_error_);
    if (auto why = stuck(); !why.empty()) throw OSError(why, 0);
    // Shared with the command: a caller that stops waiting must not leave it dangling.
    auto job = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto result = job->get_future();
    {
      std::lock_guard lock(mu_);
      commands_.emplace_back([job] { (*job)(); });
    }
    poke();
    return result;
  }
  // The MPI thread is inside MPI for good: every later call fails with `why`.
  void mark_stuck(const std::string& why) {
    std::lock_guard lock(mu_);
    stuck_ = why;
  }

  // Tells the MPI thread that a pool has news (work, a shutdown); wakes it if it sleeps.
  void notify() noexcept {
    news_.fetch_add(1, std::memory_order_seq_cst);
    poke();
  }
  void poke() noexcept {
    if (sleeping_.load(std::memory_order_seq_cst)) {
      std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
    }
  }

  bool on_mpi_thread() const noexcept { return std::this_thread::get_id() == thread_.get_id(); }

  // MPI thread. Joins the pools at the loop's next turn: a done-callback that makes a
  // pool runs while the loop walks the list.
  void adopt(std::shared_ptr<Pool> p) { incoming_.push_back(std::move(p)); }

 private:
  Runtime() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) throw OSError("concur: eventfd failed", errno);
    std::promise<void> started;
    auto ready = started.get_future();
    thread_ = std::thread([this, &started] { run(started); });
    ready.wait();
  }
  ~Runtime() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    sleeping_.store(true);  // make the poke write
    poke();
    if (!stuck().empty()) {
      // Taken for stuck inside MPI: give it a moment, then let the process exit end it
      // (nothing can be finalised).
      for (int i = 0; i < 500 && !exited_.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!exited_.load()) {
        thread_.detach();
        return;
      }
    }
    thread_.join();
  }

  void run(std::promise<void>& started) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS) {
        finalize_ = true;
      } else {
        start_error_ = std::make_exception_ptr(OSError("concur: MPI_Init_thread failed", 0));
      }
    } else {
      int level = 0;
      MPI_Query_thread(&level);
      if (level < MPI_THREAD_MULTIPLE)
        start_error_ = std::make_exception_ptr(OSError(
            "concur: the program initialised MPI without MPI_THREAD_MULTIPLE; concur makes "
            "its MPI calls from a thread of its own, so initialise MPI with "
            "MPI_Init_thread(..., MPI_THREAD_MULTIPLE, ...) or leave it to concur", 0));
    }
    started.set_value();
    if (!start_error_) loop();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalize_ && !finalized) MPI_Finalize();
    if (finalize_ || finalized)
      for (RemoteWork* t : orphans_) t->shared_state().release();
    exited_.store(true);
  }

  void retire_closed_pools() {
    std::erase_if(pools_, [this](const std::shared_ptr<Pool>& p) {
      if (!p->closed()) return false;
      for (RemoteWork* t : p->take_orphans()) orphans_.push_back(t);
      return true;
    });
  }

  void loop() {
    auto last_event = std::chrono::steady_clock::now();
    for (;;) {
      const std::uint64_t seen = news_.load(std::memory_order_seq_cst);
      std::deque<std::function<void()>> commands;
      bool stop;
      {
        std::lock_guard lock(mu_);
        commands.swap(commands_);
        stop = stop_;
      }
      for (auto& c : commands) c();
      for (auto& p : incoming_) pools_.push_back(std::move(p));
      incoming_.clear();
      if (stop) {
        for (auto& p : pools_) p->stop_now();
        retire_closed_pools();
        return;
      }
      bool progressed = !commands.empty();
      bool busy = false;
      for (auto& p : pools_) {
        progressed = p->progress() || progressed;
        busy = busy || p->busy();
      }
      retire_closed_pools();
      auto now = std::chrono::steady_clock::now();
      if (progressed) {
        last_event = now;
        continue;
      }
      // MPI has no descriptor to sleep on: while a task is out, poll with a back-off
      // (spin 50 us after the last event, then naps growing to 1 ms); with nothing out,
      // sleep until poked. Either way a local worker's death wakes the thread at once.
      auto quiet = now - last_event;
      if (busy && quiet < std::chrono::microseconds(50)) {
        ::sched_yield();
        continue;
      }
      std::vector<pollfd> fds{{wake_.get(), POLLIN, 0}};
      for (auto& p : pools_) p->add_pidfds(fds);
      timespec nap{0, std::clamp<long>(static_cast<long>(quiet.count() / 4), 10'000, 1'000'000)};
      std::chrono::milliseconds tick{0};
      for (auto& p : pools_)
        if (auto t = p->tick(); t.count() && (!tick.count() || t < tick)) tick = t;
      timespec tick_ts{tick.count() / 1000, (tick.count() % 1000) * 1'000'000};
      const timespec* timeout = busy ? &nap : tick.count() ? &tick_ts : nullptr;
      // Announce the sleep, then look again for news the pass above may have missed.
      sleeping_.store(true, std::memory_order_seq_cst);
      bool more = news_.load(std::memory_order_seq_cst) != seen;
      {
        std::lock_guard lock(mu_);
        more = more || !commands_.empty() || stop_;
      }
      if (!more) {
        ::ppoll(fds.data(), fds.size(), timeout, nullptr);
        std::uint64_t drained;
        [[maybe_unused]] ssize_t n = ::read(wake_.get(), &drained, sizeof drained);
      }
      sleeping_.store(false, std::memory_order_relaxed);
    }
  }

  std::string stuck() {
    std::lock_guard lock(mu_);
    return stuck_;
  }

  std::mutex mu_;
  std::deque<std::function<void()>> commands_;  // mu_
  bool stop_ = false;                           // mu_
  std::string stuck_;                           // mu_; why calls fail, once stuck
  std::atomic<bool> exited_{false};             // run() has returned
  std::atomic<bool> sleeping_{false};
  UniqueFd wake_;
  std::vector<std::shared_ptr<Pool>> pools_;     // the MPI thread's
  std::vector<std::shared_ptr<Pool>> incoming_;  // the MPI thread's: adopted, not yet in pools_
  std::vector<RemoteWork*> orphans_;          // the MPI thread's; released after finalising
  bool finalize_ = false;
  std::exception_ptr start_error_;
  std::atomic<std::uint64_t> news_{0};
  std::thread thread_;
};

// ---------------------------------------------------------------- Pool: user threads

void Pool::submit_bulk(std::span<TaskPtr> tasks) {
  std::vector<RemoteWork*> ready;
  ready.reserve(tasks.size());
  {
    std::lock_guard lock(mu_);
    if (!broken_.empty()) throw BrokenProcessPool(broken_);
    if (shutdown_) throw ShutdownError();
  }
  for (auto& t : tasks) {
    RemoteWork* rw = t->as_remote();
    if (!rw) throw SerializationError("concur: internal error: a task without a remote face");
    try {
      Writer w;
      RequestSink sink(this, rw);
      if (shared_) w.set_oob_sink(&sink);
      rw->encode_call(w);
      auto bytes = w.bytes();
      if (bytes.size() > static_cast<std::size_t>(INT_MAX))
        throw SerializationError("concur: the call (" + std::to_string(bytes.size()) +
                                 " bytes encoded) is larger than one MPI message can carry "
                                 "(2 GiB)");
      rw->payload.assign(bytes.begin(), bytes.end());
      rw->drop_arguments();
    } catch (...) {
      free_blocks(rw);
      rw->shared_state().try_set_exception(as_serialization_error(std::current_exception()));
      continue;
    }
    ready.push_back(rw);
    t.detach();  // the pool's queue holds this reference now
  }
  auto& rt = Runtime::get();
  {
    std::unique_lock lock(mu_);
    if (!broken_.empty() || shutdown_) {
      std::exception_ptr e = broken_.empty()
                                 ? std::make_exception_ptr(ShutdownError())
                                 : std::make_exception_ptr(BrokenProcessPool(broken_));
      lock.unlock();
      for (RemoteWork* rw : ready) {
        free_blocks(rw);
        rw->shared_state().release();
      }
      std::rethrow_exception(e);
    }
    for (RemoteWork* rw : ready) pending_.push_back(rw);
  }
  rt.notify();
}

void Pool::shutdown(bool wait, bool cancel_futures) {
  std::deque<RemoteWork*> cancelled;
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    if (cancel_futures) {
      cancelled.swap(pending_);
    }
  }
  for (RemoteWork* t : cancelled) {
    free_blocks(t);
    t->shared_state().cancel();  // queued, so never marked running: always cancellable
    t->shared_state().release();
  }
  auto& rt = Runtime::get();
  rt.notify();
  // A done-callback (run on the MPI thread) must not wait for the thread it runs on.
  if (!wait || rt.on_mpi_thread()) return;
  std::unique_lock lock(mu_);
  closed_cv_.wait(lock, [this] { return closed(); });
}

// ---------------------------------------------------------------- Pool: the MPI thread

void Pool::start() {
  const auto started = Clock::now();
  if (auto delay = g_spawn_delay_ms.load(); delay > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw OSError("concur: cannot read /proc/self/exe", errno);
  exe[n] = '\0';
  MPI_Info info;
  MPI_Info_create(&info);
  bool placed = false;
  for (auto& [key, value] : cfg_.spawn_info) {
    MPI_Info_set(info, key.c_str(), value.c_str());
    placed = placed || key == "map_by";
  }
  if (!placed) MPI_Info_set(info, "map_by", "core:OVERSUBSCRIBE");
  char flag[64];
  std::snprintf(flag, sizeof flag, "%s", kWorkerFlag);
  char* argv[] = {flag, nullptr};
  std::vector<int> errors(static_cast<std::size_t>(cfg_.max_workers), MPI_SUCCESS);
  // On a duplicate of MPI_COMM_SELF whose errors return (the default aborts the program),
  // without touching the error handler of the program's own MPI_COMM_SELF.
  MPI_Comm self = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_SELF, &self);
  MPI_Comm_set_errhandler(self, MPI_ERRORS_RETURN);
  int rc = MPI_Comm_spawn(exe, argv, cfg_.max_workers, info, 0, self, &comm_, errors.data());
  MPI_Comm_free(&self);
  MPI_Info_free(&info);
  for (int e : errors)
    if (rc == MPI_SUCCESS && e != MPI_SUCCESS) rc = e;
  if (rc != MPI_SUCCESS)
    throw OSError("concur: MPI_Comm_spawn could not start " + std::to_string(cfg_.max_workers) +
                      " workers: " + mpi_error_text(rc), 0);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  workers_.resize(static_cast<std::size_t>(cfg_.max_workers));

  const auto deadline = cfg_.spawn_timeout.count() > 0 ? started + cfg_.spawn_timeout
                                                       : Clock::time_point::max();
  try {
    handshake(deadline);
  } catch (...) {
    abandon_workers();
    throw;
  }
}

// Every worker says who it is (a different binary is refused), then gets its initializer
// and the shared areas, and says whether it is ready.
void Pool::handshake(Clock::time_point deadline) {
  const std::string here = processor_name();
  std::string refused;
  auto wait_for_all = [&](int tag, auto&& on_message) {
    for (int got = 0; got < cfg_.max_workers;) {
      Received m;
      if (try_receive(comm_, MPI_ANY_SOURCE, tag, m)) {
        on_message(m);
        ++got;
      } else if (Clock::now() > deadline) {
        throw OSError("concur: MPI workers did not answer within the spawn_timeout (" +
                          std::to_string(cfg_.spawn_timeout.count()) + " ms)", 0);
      } else {
        ::sched_yield();
      }
    }
  };
  wait_for_all(kTagHello, [&](const Received& m) {
    auto& w = workers_[static_cast<std::size_t>(m.source)];
    Reader r(m.bytes());
    auto [id, pid, host] = decode<std::tuple<std::vector<std::byte>, std::int32_t, std::string>>(r);
    w.info = {m.source, static_cast<pid_t>(pid), host};
    w.local = host == here;
    if (w.local && g_watch_local_workers.load())
      w.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (id != self_build_id() && refused.empty())
      refused = "MPI worker rank " + std::to_string(m.source) + " on " + host +
                " runs a different binary than this program (build ids differ); every host "
                "must run the same build";
  });
  for (auto& w : workers_)
    if (w.pidfd) watched_.push_back({w.pidfd.get(), POLLIN, 0});
  {
    std::lock_guard lock(mu_);
    for (auto& w : workers_) infos_.push_back(w.info);
  }
  if (!refused.empty()) {
    fail_pool(refused);
    close_channel(true);
    return;
  }
  // Workers beat ten times per timeout (between 10 ms and 1 s apart).
  const auto timeout = cfg_.heartbeat_timeout;
  const std::int64_t beat_ms =
      timeout.count() > 0 ? std::clamp<std::int64_t>(timeout.count() / 10, 10, 1000) : 0;
  share_memory();
  for (auto& w : workers_) {
    Writer init;
    const int response_fd = w.responses ? w.responses->fd() : -1;
    const std::uint64_t token = g_wrong_token.load() ? ~token_ : token_;
    encode(init, InitMessage(cfg_.initializer, beat_ms, static_cast<std::int32_t>(::getpid()),
                             shared_ ? requests_.fd() : -1, response_fd, token));
    MPI_Send(init.bytes().data(), static_cast<int>(init.bytes().size()), MPI_BYTE, w.info.rank,
             kTagInit, comm_);
  }
  std::string init_failure;
  bool attached = true;
  wait_for_all(kTagReady, [&](const Received& m) {
    Reader r(m.bytes());
    auto [why, beating, mapped] = decode<ReadyMessage>(r);
    auto& w = workers_[static_cast<std::size_t>(m.source)];
    attached = attached && mapped;
    w.beating = beating;
    w.last_heard = Clock::now();
    if (beating) tick_ = std::chrono::milliseconds(beat_ms);
    if (!why.empty() && init_failure.empty()) init_failure = why;
  });
  if (shared_ && !attached) {
    // One worker could not map the areas (another machine under the same host name, or
    // /proc closed to it): every block goes through MPI then.
    shared_ = false;
    close_areas();
  }
  if (!init_failure.empty()) {
    fail_pool("a worker's initializer failed: " + init_failure);
    close_channel(true);
  }
}

// The hand-shake failed with workers started (one that does not answer in time, say):
// kill those on this host, which makes Open MPI end the whole spawn as after a death, so
// that none is left behind, and forget the channel.
void Pool::abandon_workers() noexcept {
  std::vector<pollfd> dying;
  for (auto& w : workers_) {
    if (!w.local) continue;  // not on this host, or never said who it is
    if (!w.pidfd) w.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, w.info.pid, 0)));
    if (!w.pidfd) continue;
    ::syscall(SYS_pidfd_send_signal, w.pidfd.get(), SIGKILL, nullptr, 0);
    dying.push_back({w.pidfd.get(), POLLIN, 0});
  }
  watched_ = std::move(dying);
  fail_pool("the MPI workers did not start");
  close_channel(false);  // waits for the killed ones to be gone
}

void Pool::share_memory() {
  if (!g_share_memory.load() ||
      !std::all_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.local; }))
    return;
  try {
    std::random_device random;
    token_ = (std::uint64_t{random()} << 32) ^ random();
    create_area(requests_, "concur-mpi-requests", token_);
    request_alloc_.emplace(&requests_, kAreaAlign, requests_.size() - kAreaAlign,
                           kRetainBytes);
    for (auto& w : workers_) {
      w.responses = std::make_unique<SharedMapping>();
      create_area(*w.responses, "concur-mpi-responses", token_);
      w.response_reader = AreaReader(w.responses.get());
    }
    shared_ = true;
  } catch (const std::exception&) {
    // Out of descriptors or address space: MPI carries the blocks.
    close_areas();
  }
}

std::uint64_t Pool::RequestSink::put(const void* data, std::size_t n) {
  std::shared_lock alive(pool->area_life_);
  if (!pool->request_alloc_) throw ShutdownError();
  std::size_t off;
  {
    std::lock_guard lock(pool->alloc_mu_);
    off = pool->request_alloc_->allocate(n);
  }
  if (off == AreaAllocator::npos) throw_area_full(n, pool->requests_.size() - kAreaAlign);
  const std::uint64_t id = kAreaAlign + off;
  work->blocks.push_back(id);
  std::memcpy(pool->requests_.base() + id, data, n);
  return id;
}

void Pool::free_blocks(RemoteWork* t) noexcept {
  if (t->blocks.empty()) return;
  std::shared_lock alive(area_life_);
  if (request_alloc_) {
    std::lock_guard lock(alloc_mu_);
    for (std::uint64_t id : t->blocks) request_alloc_->free(id - kAreaAlign);
  }
  t->blocks.clear();
}

void Pool::close_areas() noexcept {
  {
    std::unique_lock lock(area_life_);
    request_alloc_.reset();
    requests_.reset();
  }
  for (auto& w : workers_) {
    w.response_reader = AreaReader();
    w.responses.reset();
  }
}

bool Pool::busy() const noexcept {
  return std::any_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.task; });
}

void Pool::add_pidfds(std::vector<pollfd>& out) const {
  if (!closed()) out.insert(out.end(), watched_.begin(), watched_.end());
}

bool Pool::progress() {
  if (closed()) return false;
  // Messages first: a heartbeat that came in while this thread was not running must count
  // before silences are judged, and a result sent just before a death is not lost.
  bool progressed = receive_outcomes();
  if (check_deaths() || check_silences()) return true;
  progressed = dispatch() || progressed;
  progressed = drop_cancelled() || progressed;
  bool done;
  {
    std::lock_guard lock(mu_);
    done = shutdown_ && pending_.empty() && !busy();
  }
  if (done) {
    close_channel(true);
    return true;
  }
  return progressed;
}

bool Pool::receive_outcomes() {
  bool any = false;
  Received m;
  if (tick_.count()) {
    const auto now = Clock::now();
    while (try_receive(comm_, MPI_ANY_SOURCE, kTagBeat, m))
      workers_[static_cast<std::size_t>(m.source)].last_heard = now;
  }
  while (try_receive(comm_, MPI_ANY_SOURCE, kTagOutcome, m)) {
    any = true;
    auto& w = workers_[static_cast<std::size_t>(m.source)];
    RemoteWork* t = std::exchange(w.task, nullptr);
    w.last_heard = Clock::now();
    MPI_Wait(&w.send, MPI_STATUS_IGNORE);  // the worker has it all: completes at once
    if (t) complete(t, m.bytes(), w.responses ? &w.response_reader : nullptr);
    m = {};
  }
  return any;
}

bool Pool::dispatch() {
  bool any = false;
  for (auto& w : workers_) {
    while (!w.task) {
      RemoteWork* t;
      {
        std::lock_guard lock(mu_);
        if (pending_.empty()) return any;
        t = pending_.front();
        pending_.pop_front();
      }
      any = true;
      bool run;
      try {
        run = t->shared_state().set_running_or_notify_cancel();
      } catch (...) {
        run = false;
      }
      if (!run) {
        free_blocks(t);
        t->shared_state().release();
        continue;
      }
      t->marked_running = true;
      int rc = MPI_Isend(t->payload.data(), static_cast<int>(t->payload.size()), MPI_BYTE,
                         w.info.rank, kTagCall, comm_, &w.send);
      if (rc != MPI_SUCCESS) {
        fail(t, std::make_exception_ptr(BrokenProcessPool(
                    "concur: sending a task to MPI worker rank " + std::to_string(w.info.rank) +
                    " failed: " + mpi_error_text(rc))));
        continue;
      }
      w.task = t;
    }
  }
  return any;
}

// Cancelled tasks leave the queue, and give their blocks back, without waiting for a free
// worker to reach them: a long queue of large cancelled tasks behind busy workers would
// hold their memory until then. Looked at every few ms while tasks wait (the MPI thread
// polls then anyway: tasks wait only while every worker has one).
bool Pool::drop_cancelled() {
  const auto now = Clock::now();
  if (now - last_sweep_ < 5ms) return false;
  last_sweep_ = now;
  std::vector<RemoteWork*> dropped;
  try {
    std::lock_guard lock(mu_);
    if (pending_.empty()) return false;
    std::deque<RemoteWork*> kept;
    for (RemoteWork* t : pending_) {
      if (t->shared_state().cancelled()) dropped.push_back(t);
      else kept.push_back(t);
    }
    if (dropped.empty()) return false;
    pending_.swap(kept);
  } catch (const std::bad_alloc&) {
    return false;  // the queue is unchanged: the dispatcher drops them when it gets there
  }
  for (RemoteWork* t : dropped) {
    free_blocks(t);
    t->shared_state().release();
  }
  return true;
}

bool Pool::check_deaths() {
  if (watched_.empty() || ::poll(watched_.data(), watched_.size(), 0) <= 0) return false;
  for (const pollfd& p : watched_) {
    if (!(p.revents & POLLIN)) continue;
    auto dead = std::find_if(workers_.begin(), workers_.end(),
                             [&](const Worker& w) { return w.pidfd.get() == p.fd; });
    const auto& info = dead->info;
    fail_pool("an MPI worker died: rank " + std::to_string(info.rank) + ", pid " +
              std::to_string(info.pid) + " on " + info.host +
              " (Open MPI then ends every worker of the pool)");
    close_channel(false);
    return true;
  }
  return false;
}

// A worker without a pidfd here (on another host) that sent no heartbeat for the timeout is
// taken for dead: Open MPI has ended it or will end the whole spawn.
bool Pool::check_silences() {
  if (!tick_.count()) return false;
  const auto now = Clock::now();
  for (auto& w : workers_) {
    if (!w.beating || w.pidfd || now - w.last_heard <= cfg_.heartbeat_timeout) continue;
    auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.last_heard);
    fail_pool("an MPI worker stopped answering: rank " + std::to_string(w.info.rank) +
              ", pid " + std::to_string(w.info.pid) + " on " + w.info.host +
              " sent no heartbeat for " + std::to_string(silent.count()) +
              " ms, so it is taken for dead (Open MPI ends every worker of the pool when "
              "one dies)");
    close_channel(false);
    return true;
  }
  return false;
}

// Fails everything queued or out with a worker; later submits throw BrokenProcessPool.
void Pool::fail_pool(const std::string& why) {
  std::deque<RemoteWork*> queued;
  {
    std::lock_guard lock(mu_);
    if (broken_.empty()) broken_ = why;
    queued.swap(pending_);
  }
  auto error = std::make_exception_ptr(BrokenProcessPool(why));
  for (RemoteWork* t : queued) fail(t, error);
  for (auto& w : workers_) {
    if (!w.task) continue;
    RemoteWork* t = std::exchange(w.task, nullptr);
    publish_failure(t, error);
    free_blocks(t);  // its worker is gone: nobody reads them
    orphans_.push_back(t);  // MPI may still be reading its payload
  }
}

// Ends the conversation with the workers: asks them to exit and disconnects when they are
// alive; otherwise (one died, so Open MPI ended the others) only forgets the channel.
void Pool::close_channel(bool workers_alive) {
  if (comm_ != MPI_COMM_NULL) {
    if (workers_alive) {
      for (auto& w : workers_) MPI_Send(nullptr, 0, MPI_BYTE, w.info.rank, kTagExit, comm_);
      MPI_Comm_disconnect(&comm_);
    }
    comm_ = MPI_COMM_NULL;
  }
  // Like Python's shutdown(wait=True), which joins its workers: the workers on this host
  // have exited when the pool is closed (bounded: Open MPI ends them in any case), so a
  // pool created next never spawns while the last one's processes are still leaving.
  std::vector<pollfd> fds = std::exchange(watched_, {});
  const auto deadline = Clock::now() + 10s;
  while (!fds.empty() && Clock::now() < deadline) {
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    std::erase_if(fds, [](const pollfd& p) { return (p.revents & POLLIN) != 0; });
  }
  for (auto& w : workers_) w.pidfd.reset();
  close_areas();
  {
    std::lock_guard lock(mu_);
    closed_.store(true, std::memory_order_release);
  }
  closed_cv_.notify_all();
}

void Pool::stop_now() {
  if (closed()) return;
  const bool idle = !busy();  // a worker still computing could not take part in disconnect
  fail_pool("the program is exiting");
  close_channel(idle);
}

void Pool::complete(RemoteWork* t, std::span<const std::byte> outcome,
                    OobSource* blocks) noexcept {
  free_blocks(t);  // the worker has finished with its arguments
  if (t->shared_state().try_begin_complete()) {
    Reader r(outcome, blocks);
    t->decode_outcome(r);
    t->shared_state().end_complete();
  }
  t->payload = {};
  t->shared_state().release();
}

void Pool::publish_failure(RemoteWork* t, const std::exception_ptr& e) noexcept {
  if (t->shared_state().try_begin_complete()) {
    t->store_failure(e);
    t->shared_state().end_complete();
  }
}

void Pool::fail(RemoteWork* t, const std::exception_ptr& e) noexcept {
  free_blocks(t);
  publish_failure(t, e);
  t->shared_state().release();
}

}  // namespace

std::shared_ptr<MpiPool> MpiPool::create(MpiPoolConfig config) {
  // The pool's own deadline covers the hand-shake; this one, a little later, a spawn that
  // never returns.
  const auto spawn_timeout = config.spawn_timeout;
  const auto timeout = spawn_timeout.count() > 0 ? spawn_timeout + std::chrono::seconds(2)
                                                 : std::chrono::milliseconds(0);
  auto pool = std::make_shared<Pool>(std::move(config));
  auto& rt = Runtime::get();
  if (rt.on_mpi_thread()) {  // made in a done-callback: no thread left to wait from
    rt.call([&] { pool->start(); });
    rt.adopt(pool);
    return pool;
  }
  // Whoever comes first claims the pool: the MPI thread once started (it adopts it), or
  // the caller giving up (the MPI thread then closes the pool if it ever gets that far).
  auto claimed = std::make_shared<std::atomic<bool>>(false);
  auto started = rt.post([pool, claimed, &rt] {
    pool->start();
    if (claimed->exchange(true)) {
      pool->stop_now();
      return;
    }
    rt.adopt(pool);
  });
  if (timeout.count() > 0 && started.wait_for(timeout) == std::future_status::timeout &&
      !claimed->exchange(true)) {
    const std::string why =
        "concur: MPI did not start the pool's workers within the spawn_timeout (" +
        std::to_string(spawn_timeout.count()) +
        " ms); the library's MPI thread is stuck inside MPI (Debian 12's Open MPI 4.1 with "
        "PMIx 4.2 hangs now and then in MPI_Comm_spawn), so this program cannot start MPI "
        "pools any more";
    rt.mark_stuck(why);
    throw OSError(why, 0);
  }
  started.get();
  return pool;
}

void mpi_start_runtime() {
  Runtime::get().call([] {});
}

void mpi_watch_local_workers(bool watch) noexcept { g_watch_local_workers.store(watch); }

void mpi_share_memory(bool share) noexcept { g_share_memory.store(share); }

void mpi_debug_wrong_token(bool wrong) noexcept { g_wrong_token.store(wrong); }

std::size_t mpi_debug_queued_tasks(const MPIPoolExecutor& ex) { return ex.pool_->queued(); }

void mpi_debug_spawn_delay(std::chrono::milliseconds delay) noexcept {
  g_spawn_delay_ms.store(delay.count());
}

}  // namespace concur::detail

// ---------------------------------------------------------------- the face

namespace concur {

MPIPoolExecutor::MPIPoolExecutor() : MPIPoolExecutor(MPIPoolOptions{}) {}

MPIPoolExecutor::MPIPoolExecutor(int max_workers)
    : MPIPoolExecutor(MPIPoolOptions{.max_workers = max_workers}) {}

MPIPoolExecutor::MPIPoolExecutor(MPIPoolOptions options) {
  static_cast<void>(detail::mpi_worker_anchor);
  detail::MpiPoolConfig cfg;
  cfg.max_workers = options.max_workers ? *options.max_workers
                                        : static_cast<int>(detail::online_cpus());
  if (cfg.max_workers < 1) throw std::invalid_argument("max_workers must be greater than 0");
  cfg.initializer = options.initializer.encoded();
  cfg.spawn_info = std::move(options.spawn_info);
  if (options.heartbeat_timeout.count() < 0)
    throw std::invalid_argument("heartbeat_timeout must not be negative");
  cfg.heartbeat_timeout = options.heartbeat_timeout;
  if (options.spawn_timeout.count() < 0)
    throw std::invalid_argument("spawn_timeout must not be negative");
  cfg.spawn_timeout = options.spawn_timeout;
  pool_ = detail::MpiPool::create(std::move(cfg));
}

MPIPoolExecutor::~MPIPoolExecutor() { pool_->shutdown(true, false); }

void MPIPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  pool_->shutdown(wait, cancel_futures);
}

int MPIPoolExecutor::max_workers() const noexcept { return pool_->max_workers(); }

std::vector<MPIWorkerInfo> MPIPoolExecutor::workers() const { return pool_->workers(); }

bool MPIPoolExecutor::shares_memory() const noexcept { return pool_->shares_memory(); }

void MPIPoolExecutor::enqueue(detail::TaskPtr task) {
  detail::TaskPtr one[1] = {std::move(task)};
  enqueue_bulk(one);
}

void MPIPoolExecutor::enqueue_bulk(std::span<detail::TaskPtr> tasks) {
  for (auto& t : tasks)
    if (!t->as_remote())
      throw SerializationError(
          "concur: this task cannot run in an MPI pool: its function must be a function "
          "pointer or a lambda without captures, and its arguments and result serializable; "
          "submit it to the MPIPoolExecutor directly to have the offending type named at "
          "compile time");
  pool_->submit_bulk(tasks);
}

std::size_t MPIPoolExecutor::default_map_window() const {
  return std::max<std::size_t>(64, 4 * static_cast<std::size_t>(pool_->max_workers()));
}

std::size_t MPIPoolExecutor::map_window(std::size_t chunk) const noexcept {
  std::size_t units = std::max<std::size_t>(8, 4 * static_cast<std::size_t>(pool_->max_workers()));
  return chunk <= 1 ? std::max<std::size_t>(64, units) : units * chunk;
}

}  // namespace concur
