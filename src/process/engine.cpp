// The process engine: dispatch, collection, the failure model (see detail/process_engine.hpp).
#include <signal.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "concur/detail/process_engine.hpp"
#include "concur/errors.hpp"
#include "process/internal.hpp"
#include "process/worker_config.hpp"

namespace concur::detail {

bool request_remote_kill(RemoteWork& w) noexcept {
  auto engine = w.engine;  // copy: the task may complete meanwhile
  return engine && engine->kill_task(w);
}

void remote_help_wait(const RemoteWork& w, const SharedState& state, const Deadline& deadline) noexcept {
  // `engine` is set before the future is handed out and never changes afterwards.
  if (const auto& engine = w.engine) engine->help_wait(state, deadline);
}

namespace {

constexpr std::uint64_t kEvPid = 1;
constexpr std::uint64_t kEvControl = 2;
constexpr std::uint64_t kEvDoorbell = 3;
// A started worker answers its hand-shake in milliseconds; one that stays silent this long
// is not a concur worker (or is stuck before main's static initialisers finish).
constexpr std::uint64_t kHelloTimeoutNs = 60'000'000'000;

struct Worker {
  int slot = -1;
  std::uint64_t id = 0;  // unique per engine, keys epoll events
  std::unique_ptr<WorkerLink> link;
  std::unique_ptr<ChildProcess> proc;
  UniqueFd control;
  pid_t pid = 0;
  bool attached = false;  // link and process ready: may receive tasks
  std::deque<RemoteWork*> inflight;  // sent, in order; each holds a reference
  std::uint64_t next_seq = 1;
  std::size_t sent = 0;
  bool hello_ok = false;
  HelloStatus hello_status = HelloStatus::ok;
  std::string hello_message;
  bool retiring = false;   // takes no more tasks (quota reached, exit sent)
  bool exit_sent = false;
  bool dead = false;
  bool terminated = false;  // signalled by signal_workers()
  bool hello_silent = false;     // killed for not answering the hand-shake
  std::uint64_t launched_ns = 0;
  bool corrupt_channel = false;  // killed because its stream could not be read
  std::uint64_t timed_out_seq = 0;
  std::uint64_t killed_seq = 0;
  std::uint64_t avg_task_ns = 0;  // recent service time, for pipelining
  std::uint64_t last_done_ns = 0;
  std::uint64_t busy_since_ns = 0;  // when it last went from idle to busy
  std::mutex consume_mu;  // one collector at a time
};
using WorkerPtr = std::shared_ptr<Worker>;

// A task removed from the engine and the fate to give it outside the lock.
struct Outcome {
  RemoteWork* task;
  bool publish;  // claimed: end_complete() it
};

// Set when this thread woke a sleeping worker, cleared when it next waits for a result.
thread_local bool t_woke_a_worker = false;

class Engine final : public ProcessEngine {
 public:
  explicit Engine(EngineOptions o) : opts_(std::move(o)) {
    if (opts_.max_workers < 1) throw std::invalid_argument("max_workers must be greater than 0");
    if (opts_.max_pipeline < 1) opts_.max_pipeline = 1;
    slots_.resize(static_cast<std::size_t>(opts_.max_workers));
    transport_ = PoolTransport::create_shm(opts_.transport);
    launcher_ = Launcher::create(opts_.start_method, opts_.launch);
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) throw_os_error("epoll_create1", errno);
    epoll_ = UniqueFd(ep);
    add_epoll(transport_->doorbell_fd(), kEvDoorbell, 0);
  }

  ~Engine() override {
    // Normally everything is released when the collector exits; this covers an engine
    // that never started one.
    for (RemoteWork* t : pending_) release(t);
    // The last reference may be the collector's own (the pool was shut down without
    // waiting): a thread cannot join itself.
    if (collector_.joinable()) {
      if (collector_.get_id() == std::this_thread::get_id()) collector_.detach();
      else collector_.join();
    }
  }

  // ------------------------------------------------------------ submit
  void submit(TaskPtr task) override {
    TaskPtr one[1] = {std::move(task)};
    submit_bulk(one);
  }

  void submit_bulk(std::span<TaskPtr> tasks) override {
    std::vector<RemoteWork*> ready;
    ready.reserve(tasks.size());
    if (!accepting_.load(std::memory_order_acquire)) {
      std::lock_guard lock(mu_);
      check_accepting_locked();
    }
    for (auto& t : tasks) {
      RemoteWork* rw = t->as_remote();
      if (!rw) throw SerializationError("concur: internal error: a task without a remote face");
      if (encode(*rw)) {
        rw->engine = shared_from_this();
        ready.push_back(rw);
        t.detach();  // the engine's queue holds this reference now
      }
      // else: the task already failed with its encoding error
    }
    StandIn stand_in(*this);
    std::vector<WorkerPtr> start;  // a batch may need several new workers (map on a new pool)
    WakeList wakes;
    {
      std::unique_lock lock(mu_);
      if (!accepting_locked()) {
        std::exception_ptr e = rejection_locked();
        lock.unlock();
        for (RemoteWork* rw : ready) {
          free_blocks(*rw);
          rw->engine.reset();
          rw->shared_state().release();
        }
        std::rethrow_exception(e);
      }
      for (RemoteWork* rw : ready) pending_.push_back(rw);
      while (auto w = maybe_reserve_worker_locked()) start.push_back(std::move(w));
      dispatch_locked(wakes);
    }
    // A worker woken here often answers on this CPU before this call returns (it takes the
    // CPU at once): this thread then stands in for the collector until the end of the call,
    // where it collects what is ready, so the worker need not wake the collector thread.
    if (!wakes.empty() && collector_sleeping_.load(std::memory_order_seq_cst)) stand_in.begin();
    wakes.wake_all();
    activity_.fetch_add(1, std::memory_order_relaxed);  // keeps the collector spinning
    ensure_collector();
    for (auto& w : start) launch(w);
    wake_collector_if_sleeping();
    // A thread submitting a stream of tasks also collects what is ready (never waiting
    // for it): each result it takes frees room that it refills at once, so the workers'
    // pipelines stay fed without a hop through the collector thread. (Standing in, the
    // stand-in's end looks at every worker anyway, after the workers can see it has ended.)
    if (submitters_collect_ && !stand_in.active()) collect_ready();
  }

  // ------------------------------------------------------------ shutdown
  void shutdown(bool wait, bool cancel_futures) override {
    std::vector<RemoteWork*> cancelled;
    bool have_collector;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
      accepting_.store(false, std::memory_order_release);
      stopping_.store(true, std::memory_order_release);
      if (cancel_futures) {
        cancelled.assign(pending_.begin(), pending_.end());
        pending_.clear();
      }
      have_collector = collector_started_;
      if (!have_collector) finished_ = true;
    }
    for (RemoteWork* t : cancelled) {
      free_blocks(*t);
      if (!t->shared_state().cancel()) {
        // Already marked running (sent once to a worker that died and then requeued).
        t->shared_state().try_set_exception(std::make_exception_ptr(CancelledError()));
      }
      release(t);
    }
    if (!have_collector) {
      std::call_once(released_, [this] { release_resources(); });
      return;
    }
    transport_->ring_doorbell();
    if (wait && std::this_thread::get_id() != collector_id_) {
      {
        std::unique_lock lock(mu_);
        finished_cv_.wait(lock, [this] { return finished_; });
      }
      join_collector();
    }
  }

  void signal_workers(int sig) override {
    shutdown(false, true);
    std::vector<WorkerPtr> ws;
    {
      std::lock_guard lock(mu_);
      terminating_ = true;
      for (auto& w : slots_)
        if (w && w->proc && !w->dead) {
          w->terminated = true;
          ws.push_back(w);
        }
    }
    for (auto& w : ws) w->proc->send_signal(sig);
    transport_->ring_doorbell();
  }

  bool kill_task(RemoteWork& work) noexcept override {
    SharedState& state = work.shared_state();
    if (state.cancel()) return true;
    WorkerPtr w;
    std::uint64_t seq, prev_killed;
    bool started;
    {
      std::lock_guard lock(mu_);
      if (work.worker < 0) return false;
      w = slots_[static_cast<std::size_t>(work.worker)];
      if (!w || w->dead || std::find(w->inflight.begin(), w->inflight.end(), &work) == w->inflight.end())
        return false;
      seq = work.seq;
      if (w->link->started_seq() < seq) w->link->skip(seq);  // not started: ask to skip it
      started = w->link->started_seq() >= seq;
      // Another kill may be on its way to this worker: keep the later call's mark.
      prev_killed = w->killed_seq;
      if (started && seq > prev_killed) w->killed_seq = seq;
    }
    if (!state.cancel_running()) return false;  // finished meanwhile
    if (started) {
      bool kill;
      {
        std::lock_guard lock(mu_);
        kill = !w->dead && w->link->fence_kill(seq);
        // It finished that call: nothing to stop (and another kill's mark stays).
        if (!kill && !w->dead && w->killed_seq == seq) w->killed_seq = prev_killed;
      }
      if (opts_.debug_kill_delay.count() > 0) std::this_thread::sleep_for(opts_.debug_kill_delay);
      if (kill) {
        std::lock_guard lock(mu_);
        if (!w->dead) w->proc->send_signal(SIGKILL);
      }
    }
    return true;
  }

  // ------------------------------------------------------------ waiting threads
  // Leader/follower: a thread blocked on a result polls the response rings itself for a
  // bounded time, so the result needs no thread hop (and no wake-up) on its way back.
  // Meanwhile the collector thread stops spinning and workers stop ringing the doorbell.
  bool help_wait(const SharedState& state, const Deadline& deadline) noexcept override {
    if (state.done()) return true;
    if (!collector_running_.load(std::memory_order_acquire)) return state.done();
    begin_helping();
    const bool yield_first = std::exchange(t_woke_a_worker, false);
    std::vector<WorkerPtr> ws = snapshot();
    std::uint64_t version = workers_version_.load(std::memory_order_acquire);
    std::uint64_t until = monotonic_ns() + static_cast<std::uint64_t>(opts_.collector_spin_ns);
    for (unsigned round = 1;; ++round) {
      for (auto& w : ws)
        if (w->link->has_response()) collect(*w, /*block=*/false, Publish::safe_only);
      if (state.done()) break;
      if (round % 16 == 0 && (expired(deadline) || monotonic_ns() >= until)) break;
      // Yield now and then, and at once after this thread woke a worker: that worker
      // usually waits for this very CPU.
      if (round % 32 == 0 || (round == 1 && yield_first)) {
        sched_yield();
        if (workers_version_.load(std::memory_order_acquire) != version) {
          ws = snapshot();
          version = workers_version_.load(std::memory_order_acquire);
        }
      } else {
        cpu_relax();
      }
    }
    end_helping(ws);
    return state.done();
  }

  // A helper polls the response rings itself, so workers need not ring the doorbell.
  void begin_helping() noexcept {
    helpers_.fetch_add(1, std::memory_order_seq_cst);
    transport_->set_parent_helping(true);
  }
  // The submitting thread helping for the length of a submit (see submit_bulk).
  class StandIn {
   public:
    explicit StandIn(Engine& e) noexcept : e_(&e) {}
    void begin() noexcept {
      e_->begin_helping();
      active_ = true;
    }
    bool active() const noexcept { return active_; }
    StandIn(const StandIn&) = delete;
    StandIn& operator=(const StandIn&) = delete;
    ~StandIn() {
      if (!active_) return;
      std::vector<WorkerPtr> ws;
      try {
        ws = e_->snapshot();
      } catch (...) {
        e_->transport_->ring_doorbell();  // cannot look: let the collector do it
      }
      e_->end_helping(ws);
    }

   private:
    Engine* e_;
    bool active_ = false;
  };
  void end_helping(const std::vector<WorkerPtr>& ws) noexcept {
    transport_->set_parent_helping(false);
    helpers_.fetch_sub(1, std::memory_order_seq_cst);
    // A worker may have skipped the doorbell because we were helping: look once more.
    for (auto& w : ws)
      if (w->link->has_response()) collect(*w, /*block=*/false, Publish::safe_only);
    if (collector_sleeping_.load(std::memory_order_seq_cst))
      for (auto& w : ws)
        if (w->link->has_response()) {
          transport_->ring_doorbell();
          break;
        }
  }

  // ------------------------------------------------------------ queries
  int max_workers() const noexcept override { return opts_.max_workers; }
  std::vector<WorkerInfo> workers() const override {
    std::lock_guard lock(mu_);
    std::vector<WorkerInfo> out;
    for (auto& w : slots_)
      if (w && !w->dead && w->pid) out.push_back({w->pid, w->sent});
    return out;
  }
  std::size_t processes_started() const noexcept override {
    return started_count_.load(std::memory_order_relaxed);
  }
  bool broken() const noexcept override { return broken_flag_.load(std::memory_order_acquire); }
  StartMethod start_method() const noexcept override { return opts_.start_method; }
  int helping_threads() const noexcept override { return helpers_.load(std::memory_order_seq_cst); }
  void corrupt_next_request() noexcept override {
    std::lock_guard lock(mu_);
    corrupt_next_ = true;
  }

 private:
  // ------------------------------------------------------------ encoding
  // Encodes the call into the task; false (and the task failed) on an encoding error.
  bool encode(RemoteWork& rw) {
    struct Sink final : OobSink {
      PoolTransport* t;
      RemoteWork* rw;
      std::uint64_t put(const void* data, std::size_t n) override {
        std::uint64_t id = t->put_request_block(data, n);
        rw->blocks.push_back(id);
        return id;
      }
    } sink;
    sink.t = transport_.get();
    sink.rw = &rw;
    try {
      Writer w;
      w.set_oob_sink(&sink);
      rw.encode_call(w);
      auto bytes = w.bytes();
      if (bytes.size() > opts_.transport.max_inline) {
        rw.spill_id = transport_->put_request_block(bytes.data(), bytes.size());
        rw.spill_len = bytes.size();
      } else {
        rw.payload.assign(bytes.begin(), bytes.end());
      }
      rw.drop_arguments();
      return true;
    } catch (...) {
      free_blocks(rw);
      std::exception_ptr e = as_serialization_error(std::current_exception());
      rw.shared_state().try_set_exception(e);
      return false;
    }
  }

  void free_blocks(RemoteWork& rw) noexcept {
    for (std::uint64_t id : rw.blocks) transport_->free_request_block(id);
    rw.blocks.clear();
    if (rw.spill_len) transport_->free_request_block(rw.spill_id);
    rw.spill_len = 0;
    rw.payload.clear();
    rw.payload.shrink_to_fit();
  }

  static void release(RemoteWork* t) noexcept { t->shared_state().release(); }

  // ------------------------------------------------------------ state checks
  bool accepting_locked() const noexcept { return broken_.empty() && !shutdown_; }
  std::exception_ptr rejection_locked() const {
    if (!broken_.empty()) return std::make_exception_ptr(BrokenProcessPool(broken_));
    return std::make_exception_ptr(ShutdownError());
  }
  void check_accepting_locked() const {
    if (!accepting_locked()) std::rethrow_exception(rejection_locked());
  }

  // ------------------------------------------------------------ workers
  std::size_t live_locked() const noexcept {
    std::size_t n = 0;
    for (auto& w : slots_) n += (w && !w->dead);
    return n;
  }
  // Workers (started or still starting) with nothing to do: each can take one task.
  std::size_t idle_workers_locked() const noexcept {
    std::size_t n = 0;
    for (auto& w : slots_) n += (w && !w->dead && !w->retiring && w->inflight.empty());
    return n;
  }

  // Python's rule: a new process only when the queued work outnumbers the idle workers, up
  // to max_workers. Counting (rather than "is any worker idle") matters while a worker is
  // still starting: two quick submits then start two processes, as in Python, instead of
  // queueing the second behind the first on one worker.
  WorkerPtr maybe_reserve_worker_locked() {
    if (pending_.empty() || idle_workers_locked() >= pending_.size() || !broken_.empty() ||
        terminating_)
      return nullptr;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i]) continue;  // busy, or a dead worker still being cleaned up
      auto w = std::make_shared<Worker>();
      w->slot = static_cast<int>(i);
      w->id = ++next_worker_id_;
      slots_[i] = w;
      started_count_.fetch_add(1, std::memory_order_relaxed);
      return w;
    }
    return nullptr;
  }

  // Starts the process of a reserved worker (no lock held: this may take a while).
  void launch(const WorkerPtr& w) {
    WakeList wakes;
    try {
      auto link = transport_->create_link();
      auto [mine, theirs] = make_socket_pair();
      auto proc = launcher_->start(std::move(theirs));
      Hello hello;
      hello.role = ChildRole::pool_worker;
      hello.owner = ::getpid();
      hello.build_id = executable_identity();
      WorkerConfig cfg;
      cfg.index = static_cast<std::uint32_t>(w->slot);
      cfg.max_tasks = opts_.max_tasks_per_child;
      cfg.max_memory = opts_.max_memory_per_child;
      cfg.spin_ns = opts_.worker_spin_ns;
      cfg.timed = opts_.task_timeout.count() > 0;
      cfg.transport = transport_->describe();
      cfg.initializer = opts_.initializer;
      hello.payload = cfg.encode();
      std::vector<int> fds = transport_->worker_fds();
      for (int fd : link->worker_fds()) fds.push_back(fd);
      send_hello(mine.get(), hello, fds);
      {
        std::lock_guard lock(mu_);
        w->link = std::move(link);
        w->proc = std::move(proc);
        w->pid = w->proc->pid();
        w->control = std::move(mine);
        w->attached = true;
        w->launched_ns = monotonic_ns();
        workers_changed_locked();
        add_epoll(w->proc->pidfd(), kEvPid, w->id);
        add_epoll(w->control.get(), kEvControl, w->id);
        by_id_[w->id] = w;
        dispatch_locked(wakes);
      }
      wakes.wake_all();
      wake_collector_if_sleeping();
    } catch (const std::exception& e) {
      std::vector<Outcome> failed;
      {
        std::lock_guard lock(mu_);
        slots_[static_cast<std::size_t>(w->slot)].reset();
        if (live_locked() == 0 && !pending_.empty()) {
          break_locked(std::string("concur: a worker process of the ") + opts_.kind +
                           " could not be started (" + e.what() + "); the pool is not usable anymore",
                       failed);
        }
      }
      finish(failed);
      transport_->ring_doorbell();
    }
  }

  // The number of tasks w may hold now.
  std::size_t capacity_locked(const Worker& w) const noexcept {
    if (!w.attached || w.dead || w.retiring) return 0;
    // Unknown duration (a new worker): no task ahead until one has finished, so a task
    // never waits behind one that may be long while another worker could take it.
    std::uint64_t budget = static_cast<std::uint64_t>(opts_.pipeline_budget.count());
    std::size_t cap = w.avg_task_ns == 0 ? 1
                                         : static_cast<std::size_t>(
                                               1 + budget / std::max<std::uint64_t>(w.avg_task_ns, 1));
    cap = std::min(cap, opts_.max_pipeline);
    if (opts_.max_tasks_per_child) {
      std::size_t left = opts_.max_tasks_per_child - std::min(w.sent, opts_.max_tasks_per_child);
      cap = std::min(cap, w.inflight.size() + left);
    }
    return cap;
  }

  Worker* pick_worker_locked() {
    Worker* best = nullptr;
    std::size_t best_score = SIZE_MAX;
    for (auto& wp : slots_) {
      if (!wp) continue;
      Worker& w = *wp;
      if (w.inflight.size() >= capacity_locked(w)) continue;
      std::size_t score = w.inflight.size() * 2 + (w.link->worker_spinning() ? 0 : 1);
      if (score < best_score) {
        best = &w;
        best_score = score;
      }
    }
    return best;
  }

  // Workers that were sent requests while asleep, to wake once mu_ is released: a woken
  // worker often takes the waker's CPU at once, and must not find the engine locked by a
  // thread that cannot run. Declare the list before the lock: what is left in it is woken
  // when the scope ends, after the lock is released.
  class WakeList {
   public:
    WakeList() = default;
    WakeList(const WakeList&) = delete;
    WakeList& operator=(const WakeList&) = delete;
    ~WakeList() { wake_all(); }
    void add(const WorkerPtr& w) noexcept {
      try {
        ws_.push_back(w);
      } catch (...) {
        w->link->wake();  // no memory to defer it: wake now
      }
    }
    bool empty() const noexcept { return ws_.empty(); }
    void wake_all() noexcept {
      if (ws_.empty()) return;
      for (auto& w : ws_) w->link->wake();
      ws_.clear();
      t_woke_a_worker = true;
    }

   private:
    std::vector<WorkerPtr> ws_;
  };

  void dispatch_locked(WakeList& wakes) {
    while (!pending_.empty()) {
      Worker* w = pick_worker_locked();
      if (!w) break;
      RemoteWork* t = pending_.front();
      if (!t->marked_running) {
        bool run;
        try {
          run = t->shared_state().set_running_or_notify_cancel();
        } catch (...) {
          run = false;
        }
        if (!run) {
          pending_.pop_front();
          free_blocks(*t);
          release(t);
          continue;
        }
        t->marked_running = true;
      }
      std::uint64_t seq = w->next_seq;
      if (corrupt_next_) {
        w->link->corrupt_next_request();
        corrupt_next_ = false;
      }
      bool wake = false;
      if (!w->link->send(MsgKind::call, seq, t->payload, t->spill_id, t->spill_len, &wake)) break;
      if (wake) wakes.add(slots_[static_cast<std::size_t>(w->slot)]);
      pending_.pop_front();
      w->next_seq++;
      t->seq = seq;
      t->worker = w->slot;
      if (w->inflight.empty()) w->busy_since_ns = monotonic_ns();
      w->inflight.push_back(t);
      w->sent++;
      inflight_total_.fetch_add(1, std::memory_order_relaxed);
      if (opts_.max_tasks_per_child && w->sent >= opts_.max_tasks_per_child) w->retiring = true;
    }
  }

  // Workers changed (added, attached, died): collectors refresh their snapshots.
  void workers_changed_locked() noexcept { workers_version_.fetch_add(1, std::memory_order_release); }

  std::vector<WorkerPtr> snapshot() const {
    std::lock_guard lock(mu_);
    std::vector<WorkerPtr> out;
    for (auto& w : slots_)
      if (w && w->attached && !w->dead) out.push_back(w);
    return out;
  }

  // ------------------------------------------------------------ collection
  // Reads w's responses; returns true when it completed something.
  // Who completes the futures collect() finds: the collector thread completes all; any
  // other thread (a submitter, a waiter helping) only those without done-callbacks, and
  // hands the others to the collector, so that a callback never runs inside a submit()
  // or in a thread that waits for another future (it may hold a lock the callback takes).
  enum class Publish { here, safe_only };

  bool collect(Worker& w, bool block, Publish who = Publish::here) {
    std::unique_lock cl(w.consume_mu, std::defer_lock);
    if (block) cl.lock();
    else if (!cl.try_lock()) return false;
    std::vector<Outcome> done;
    bool broken_channel = false;
    std::size_t batch = 0;
    for (;;) {
      InMessage m;
      bool got;
      try {
        got = w.link->receive(m);
      } catch (const SerializationError&) {
        broken_channel = true;
        break;
      }
      if (!got) break;
      RemoteWork* t = nullptr;
      {
        std::lock_guard lock(mu_);
        if (!w.inflight.empty() && w.inflight.front()->seq == m.seq) {
          t = w.inflight.front();
          w.inflight.pop_front();
          inflight_total_.fetch_sub(1, std::memory_order_relaxed);
          ++batch;
        }
      }
      if (!t) {
        w.link->release(m);
        broken_channel = true;
        break;
      }
      bool publish = false;
      if (t->shared_state().try_begin_complete()) {
        publish = true;
        if (m.corrupt) {
          t->store_failure(std::make_exception_ptr(SerializationError(
              "concur: the result message of this task was corrupt (integrity check failed)")));
        } else if (m.kind == MsgKind::protocol_error) {
          t->store_failure(std::make_exception_ptr(SerializationError(
              std::string(reinterpret_cast<const char*>(m.payload.data()), m.payload.size()))));
        } else if (m.kind != MsgKind::outcome) {
          t->store_failure(std::make_exception_ptr(
              SerializationError("concur: unexpected message kind from a worker")));
        } else {
          Reader r(m.payload, &w.link->response_source());
          t->decode_outcome(r);
        }
      }
      w.link->release(m);
      free_blocks(*t);
      done.push_back({t, publish});
    }
    if (broken_channel && w.proc) {
      {
        std::lock_guard lock(mu_);
        w.corrupt_channel = true;
      }
      w.proc->send_signal(SIGKILL);  // the stream cannot be resynchronised
    }
    WakeList wakes;
    if (!done.empty()) {
      std::lock_guard lock(mu_);
      // Service time per task, for the pipeline depth: one clock read per batch.
      std::uint64_t now = monotonic_ns();
      std::uint64_t began = std::max(w.busy_since_ns, w.last_done_ns);
      if (batch && now > began) {
        std::uint64_t each = (now - began) / batch;
        w.avg_task_ns = w.avg_task_ns ? (w.avg_task_ns * 3 + each) / 4 : each;
      }
      w.last_done_ns = now;
      dispatch_locked(wakes);
    }
    cl.unlock();
    wakes.wake_all();
    bool any = !done.empty();
    if (who == Publish::safe_only) defer_unsafe(done);
    finish(done);
    return any;
  }

  static bool no_listeners(SharedState& s) noexcept {
#if defined(CONCUR_SHARED_STATE_HAS_HELP_WAIT)
    return !s.has_listeners();
#else
    static_cast<void>(s);
    return false;  // cannot tell: let the collector complete it
#endif
  }

  // Moves the outcomes that may have callbacks to the collector's list.
  void defer_unsafe(std::vector<Outcome>& done) {
    std::size_t kept = 0;
    bool deferred = false;
    for (auto& o : done) {
      if (!o.publish || no_listeners(o.task->shared_state())) {
        done[kept++] = o;
      } else {
        std::lock_guard lock(deferred_mu_);
        deferred_.push_back(o);
        deferred = true;
      }
    }
    done.resize(kept);
    if (deferred) {
      deferred_count_.fetch_add(1, std::memory_order_release);
      if (collector_sleeping_.load(std::memory_order_seq_cst)) transport_->ring_doorbell();
    }
  }

  // The collector completes what other threads collected but could not complete.
  bool publish_deferred() {
    if (deferred_count_.load(std::memory_order_acquire) == 0) return false;
    std::vector<Outcome> list;
    {
      std::lock_guard lock(deferred_mu_);
      list.swap(deferred_);
      deferred_count_.store(0, std::memory_order_relaxed);
    }
    finish(list);
    return true;
  }

  // Publishes outcomes and drops the engine's references (no lock held: callbacks run).
  static void finish(std::vector<Outcome>& list) noexcept {
    for (auto& o : list) {
      if (o.publish) o.task->shared_state().end_complete();
      release(o.task);
    }
    list.clear();
  }

  // The collector's cached view of the workers (refreshed when they change).
  std::vector<WorkerPtr> cached_;
  std::uint64_t cached_version_ = ~std::uint64_t{0};
  const std::vector<WorkerPtr>& collector_view() {
    std::uint64_t v = workers_version_.load(std::memory_order_acquire);
    if (v != cached_version_) {
      cached_ = snapshot();
      cached_version_ = v;
    }
    return cached_;
  }

  // Non-blocking collection from any thread; the worker list is read under the lock
  // only when it changed.
  void collect_ready() {
    std::vector<WorkerPtr> ws;
    {
      std::lock_guard lock(mu_);
      for (auto& w : slots_)
        if (w && w->attached && !w->dead && w->link->has_response()) ws.push_back(w);
    }
    for (auto& w : ws) collect(*w, /*block=*/false, Publish::safe_only);
  }

  bool collect_all() {
    bool any = false;
    for (auto& w : collector_view())
      if (w->link->has_response()) any |= collect(*w, false);
    return any;
  }

  // ------------------------------------------------------------ failures
  // Fails every queued and running task, stops all workers. Caller holds mu_.
  void break_locked(const std::string& why, std::vector<Outcome>& out) {
    if (broken_.empty()) {
      broken_ = why;
      broken_flag_.store(true, std::memory_order_release);
      accepting_.store(false, std::memory_order_release);
      stopping_.store(true, std::memory_order_release);
    }
    auto fail = [&](RemoteWork* t) {
      free_blocks(*t);
      bool claimed = t->shared_state().try_begin_complete();
      if (claimed) t->store_failure(std::make_exception_ptr(BrokenProcessPool(why)));
      out.push_back({t, claimed});
    };
    for (RemoteWork* t : pending_) fail(t);
    pending_.clear();
    for (auto& w : slots_) {
      if (!w) continue;
      for (RemoteWork* t : w->inflight) fail(t);
      inflight_total_.fetch_sub(w->inflight.size(), std::memory_order_relaxed);
      w->inflight.clear();
      w->retiring = true;
      if (w->proc && !w->dead) w->proc->send_signal(SIGKILL);
    }
  }

  static std::string worker_label(const Worker& w) {
    return "worker process " + std::to_string(w.pid);
  }

  // A worker's pidfd fired: account for its tasks and apply the policy. Collector thread.
  void on_worker_exit(const WorkerPtr& w) {
    ExitStatus st;
    if (auto s = w->proc->wait(std::chrono::milliseconds(2000))) st = *s;
    read_hello(*w);  // a reply may still be buffered (initializer failure, refusal)
    collect(*w, /*block=*/true);  // results sent before it died are valid
    std::vector<Outcome> out;
    {
      std::lock_guard lock(mu_);
      w->dead = true;
      if (w->hello_ok) ready_workers_.fetch_sub(1, std::memory_order_relaxed);
      ExitReason reason = w->link ? w->link->exit_reason() : ExitReason::none;
      std::uint64_t started = w->link ? w->link->started_seq() : 0;
      // A call the worker was holding because of a kill fence did not run.
      if (std::uint64_t held = w->link ? w->link->held_seq() : 0; held != 0 && held == started)
        started = held - 1;
      // A worker that said why it leaves exited cleanly, unless its status says otherwise
      // (unknown when its fork server died meanwhile).
      bool clean = (!st.known || (st.signal == 0 && st.exit_code == 0)) &&
                   (reason == ExitReason::asked || reason == ExitReason::max_tasks ||
                    reason == ExitReason::max_memory);
      std::string how = st.describe();
      std::deque<RemoteWork*> tasks;
      tasks.swap(w->inflight);
      inflight_total_.fetch_sub(tasks.size(), std::memory_order_relaxed);
      bool task_died = false;
      for (RemoteWork* t : tasks) task_died |= (t->seq <= started && !clean);

      // The policy first: does this death break the pool?
      std::string why;
      // A worker that dies before it is ready without saying why (killed from outside, an
      // OOM kill) is only replaced under replace_worker - unless workers keep dying that
      // way: then the program is the cause (an initializer that crashes) and replacing
      // them would loop forever. A worker that said why (a failing initializer, a wrong
      // binary, no answer to the hand-shake) breaks the pool at once.
      bool starting = !w->hello_ok && !w->terminated && broken_.empty();
      bool said_why = w->hello_status == HelloStatus::wrong_binary || !w->hello_message.empty();
      bool replace_at_start = starting && !said_why &&
                              opts_.on_worker_death == OnWorkerDeath::replace_worker &&
                              ++startup_deaths_ < kStartupDeathLimit;
      if (starting && !replace_at_start) {
        if (w->hello_status == HelloStatus::wrong_binary)
          why = "concur: " + worker_label(*w) + " refused to work: " + w->hello_message;
        else if (said_why)
          why = "concur: " + w->hello_message + " (" + worker_label(*w) + ", " + how + ")";
        else if (opts_.on_worker_death == OnWorkerDeath::replace_worker)
          why = "concur: " + std::to_string(startup_deaths_) + " workers in a row died before "
                "they were ready, the last one " + worker_label(*w) + " (" + how + ")";
        else
          why = "concur: " + worker_label(*w) + " died (" + how + ") before it was ready";
        why += "; the " + opts_.kind + " is not usable anymore";
      } else if (!clean && !w->terminated && !w->timed_out_seq && !w->killed_seq &&
                 !w->corrupt_channel && opts_.on_worker_death == OnWorkerDeath::break_pool &&
                 broken_.empty() && !terminating_) {
        why = broken_message(*w, how, task_died);
      }
      bool breaking = !why.empty();

      std::vector<RemoteWork*> requeue;
      for (RemoteWork* t : tasks) {
        SharedState& s = t->shared_state();
        std::exception_ptr err;
        if (w->killed_seq && t->seq == w->killed_seq) {
          free_blocks(*t);
          out.push_back({t, false});  // already cancelled by kill_task()
          continue;
        }
        if (w->timed_out_seq && t->seq == w->timed_out_seq) {
          err = std::make_exception_ptr(TimeoutError(
              "concur: the task ran longer than task_timeout (" +
              std::to_string(opts_.task_timeout.count() / 1'000'000) + " ms); its " +
              worker_label(*w) + " was killed"));
        } else if (t->seq <= started && !clean) {
          if (breaking)
            err = std::make_exception_ptr(BrokenProcessPool(why));
          else if (w->corrupt_channel)
            err = std::make_exception_ptr(SerializationError(
                "concur: the channel to " + worker_label(*w) +
                " was corrupt while this task ran; the worker was replaced"));
          else if (w->terminated)
            err = std::make_exception_ptr(BrokenProcessPool(
                "concur: " + worker_label(*w) + " was terminated (" + how +
                ") by terminate_workers()/kill_workers() while running this task"));
          else
            err = std::make_exception_ptr(WorkerDiedError(
                "concur: " + worker_label(*w) + " died (" + how +
                    ") while running this task (or transferring its arguments or result)",
                st.signal ? -1 : st.exit_code, st.signal));
        } else {
          requeue.push_back(t);  // never started: another worker will run it
          continue;
        }
        free_blocks(*t);
        bool c = s.try_begin_complete();
        if (c) t->store_failure(err);
        out.push_back({t, c});
      }
      for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) pending_.push_front(*it);
      if (breaking) break_locked(why, out);
      slots_[static_cast<std::size_t>(w->slot)].reset();
      by_id_.erase(w->id);
      workers_changed_locked();
      if (terminating_) {
        // No replacement escapes a forced shutdown: what was requeued fails.
        for (RemoteWork* t : pending_) {
          free_blocks(*t);
          bool c = t->shared_state().try_begin_complete();
          if (c)
            t->store_failure(std::make_exception_ptr(BrokenProcessPool(
                "concur: the " + opts_.kind + " was shut down forcefully (terminate_workers/"
                "kill_workers) before this task ran")));
          out.push_back({t, c});
        }
        pending_.clear();
      }
    }
    del_epoll(w->proc->pidfd());
    if (w->control) del_epoll(w->control.get());
    finish(out);
    replenish();
  }

  std::string broken_message(const Worker& w, const std::string& how, bool task_died) const {
    return "concur: " + worker_label(w) + " of the " + opts_.kind + " terminated abruptly (" + how +
           (task_died ? ") while running a task" : ") while idle") +
           "; the pool is not usable anymore (OnWorkerDeath::break_pool)";
  }

  // Starts workers for queued work after deaths or retirements.
  void replenish() {
    for (;;) {
      WorkerPtr w;
      WakeList wakes;
      {
        std::lock_guard lock(mu_);
        if (!broken_.empty() || terminating_) return;
        w = maybe_reserve_worker_locked();
        if (!w) {
          dispatch_locked(wakes);
          return;  // the lock is released, then the workers are woken
        }
      }
      launch(w);
    }
  }

  void read_hello(Worker& w) {
    if (!w.control || w.hello_ok || w.hello_status != HelloStatus::ok || !w.hello_message.empty())
      return;
    HelloReply r;
    try {
      if (!receive_hello_reply(w.control.get(), r, 0)) return;
    } catch (...) {
      return;
    }
    std::lock_guard lock(mu_);
    w.hello_status = r.status;
    w.hello_message = r.message;
    w.hello_ok = r.status == HelloStatus::ok;
    if (w.hello_ok) {
      ready_workers_.fetch_add(1, std::memory_order_relaxed);
      startup_deaths_ = 0;
    }
  }

  // ------------------------------------------------------------ task_timeout
  // Kills workers whose running task is over time, or that never answered the hand-shake;
  // returns ms until the next check (-1: none needed).
  int check_timeouts() {
    std::uint64_t now = monotonic_ns();
    std::uint64_t next = UINT64_MAX;
    std::lock_guard lock(mu_);
    for (auto& w : slots_) {
      if (!w || w->dead || !w->attached || w->hello_ok || w->hello_silent) continue;
      std::uint64_t at = w->launched_ns + kHelloTimeoutNs;
      if (now >= at) {
        w->hello_silent = true;  // the death that follows breaks the pool with this reason
        w->hello_message = "the worker did not answer the hand-shake within " +
                           std::to_string(kHelloTimeoutNs / 1'000'000'000) + " s";
        w->proc->send_signal(SIGKILL);
      } else {
        next = std::min(next, at);
      }
    }
    if (opts_.task_timeout.count() <= 0) {
      if (next == UINT64_MAX) return -1;
      return static_cast<int>((next - now) / 1'000'000 + 1);
    }
    auto timeout = static_cast<std::uint64_t>(opts_.task_timeout.count());
    for (auto& w : slots_) {
      if (!w || w->dead || !w->attached || w->inflight.empty() || w->timed_out_seq) continue;
      std::uint64_t front = w->inflight.front()->seq;
      std::uint64_t s = w->link->started_seq();
      if (s == front) {
        std::uint64_t at = w->link->started_ns() + timeout;
        if (now >= at) {
          if (w->link->fence_kill(s)) {  // else it just finished: its result is on the way
            w->timed_out_seq = s;
            w->proc->send_signal(SIGKILL);
          }
        } else {
          next = std::min(next, at);
        }
      } else {
        next = std::min(next, now + timeout / 4 + 1'000'000);
      }
    }
    if (next == UINT64_MAX) return -1;
    return static_cast<int>((next - now) / 1'000'000 + 1);
  }

  // ------------------------------------------------------------ the collector thread
 public:
  void start_collector() { ensure_collector(); }

 private:
  void ensure_collector() {
    if (collector_running_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(mu_);
    if (collector_started_ || finished_) return;
    collector_started_ = true;
    collector_running_.store(true, std::memory_order_release);
    collector_ = std::thread([self = std::static_pointer_cast<Engine>(shared_from_this())] {
      self->run();
    });
    collector_id_ = collector_.get_id();
  }

  // Waits until the collector thread has ended, not only its loop: a thread still on its
  // way out (freeing its caches) while the program forks a `fork` pool's zygote could
  // leave an allocator lock held in the zygote under allocators that do not lock around
  // fork() (clang 14's ASan; seen as a worker stuck in malloc). Python's shutdown(wait)
  // joins its management thread too.
  void join_collector() {
    std::lock_guard lock(join_mu_);
    if (collector_.joinable()) collector_.join();
  }

  // Called after work is sent. Without the wait hook the collector delivers every result,
  // so waking it now, in parallel with the worker, saves a wake-up in series later. With
  // the hook a waiting thread collects its own result and this wake-up would only cost the
  // submitter a system call; the worker rings the doorbell itself when nobody collects.
  void wake_collector_if_sleeping() {
#if !defined(CONCUR_SHARED_STATE_HAS_HELP_WAIT)
    if (collector_sleeping_.load(std::memory_order_seq_cst)) transport_->ring_doorbell();
#endif
  }

  void add_epoll(int fd, std::uint64_t kind, std::uint64_t id) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id * 4 + kind;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  void del_epoll(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

  void handle_event(std::uint64_t data) {
    std::uint64_t kind = data % 4, id = data / 4;
    if (kind == kEvDoorbell) return;
    WorkerPtr w;
    {
      std::lock_guard lock(mu_);
      auto it = by_id_.find(id);
      if (it == by_id_.end()) return;
      w = it->second;
    }
    if (kind == kEvPid) {
      on_worker_exit(w);
    } else if (kind == kEvControl) {
      read_hello(*w);
      if (!wait_readable(w->control.get(), 0)) return;
      // Readable again after the reply: EOF (the worker is gone, the pidfd will say how).
      char c;
      if (::recv(w->control.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) del_epoll(w->control.get());
    }
  }

  // Idle and shut down: ask idle workers to exit; true once nothing is left.
  bool wind_down() {
    std::lock_guard lock(mu_);
    if (!shutdown_ && broken_.empty()) return false;
    if (!pending_.empty()) return false;
    bool any = false;
    for (auto& w : slots_) {
      if (!w) continue;
      any = true;
      if (w->dead || !w->attached) continue;
      if (!w->inflight.empty()) continue;
      if (!w->exit_sent && broken_.empty()) {
        w->exit_sent = w->link->send(MsgKind::exit, w->next_seq, {});
        w->retiring = true;
      } else if (!broken_.empty() && !w->exit_sent) {
        w->proc->send_signal(SIGKILL);
        w->exit_sent = true;
      }
    }
    return !any;
  }

  void run() {
    std::uint64_t last_event = monotonic_ns();
    std::uint64_t seen_activity = activity_.load(std::memory_order_relaxed);
    std::uint64_t last_checks = 0;
    epoll_event evs[32];
    unsigned spins = 0;
    int timeout_ms = -1;
    for (;;) {
      std::uint64_t now = monotonic_ns();
      bool progressed = collect_all();
      progressed = publish_deferred() || progressed;
      if (progressed) last_event = now;
      if (std::uint64_t a = activity_.load(std::memory_order_relaxed); a != seen_activity) {
        seen_activity = a;  // a submit: results may come soon
        last_event = now;
      }
      // The slower duties, at most every 200 us while spinning.
      if (now - last_checks > 200'000 || !spins) {
        last_checks = now;
        timeout_ms = check_timeouts();
        if (stopping_.load(std::memory_order_acquire) && wind_down()) break;
      }
      std::uint64_t recent = last_event;
      // Spin only when a result can come soon: some worker is up (a spinner would delay a
      // worker that was just forked by a whole scheduler slice) and no waiting thread
      // polls for itself (a second spinner would only take its CPU).
      bool busy = now - recent < static_cast<std::uint64_t>(opts_.collector_spin_ns) &&
                  helpers_.load(std::memory_order_relaxed) == 0 &&
                  ready_workers_.load(std::memory_order_relaxed) > 0;
      int n;
      if (busy) {
        // Spin (yielding the CPU between rounds) shortly after any activity, so that the
        // next result or submit finds the collector awake; look at the sentinels now and
        // then.
        if (++spins % 32 != 0) {
          for (int i = 0; i < 32; ++i) cpu_relax();
          sched_yield();
          continue;
        }
        n = ::epoll_wait(epoll_.get(), evs, 32, 0);
      } else {
        spins = 0;
        // Whatever happened while spinning (a worker's exit, a shutdown) must be looked at
        // before sleeping: nothing else would wake the collector for it.
        timeout_ms = check_timeouts();
        if (stopping_.load(std::memory_order_acquire) && wind_down()) break;
        collector_sleeping_.store(true, std::memory_order_seq_cst);
        transport_->set_parent_sleeping(true);
        bool ready = deferred_count_.load(std::memory_order_seq_cst) != 0;
        for (auto& w : collector_view()) ready |= w->link->has_response();
        bool sleep = !ready && (helpers_.load(std::memory_order_seq_cst) > 0 ||
                                ready_workers_.load(std::memory_order_relaxed) == 0 ||
                                activity_.load(std::memory_order_seq_cst) == seen_activity);
        n = ::epoll_wait(epoll_.get(), evs, 32, sleep ? (timeout_ms < 0 ? 1000 : timeout_ms) : 0);
        transport_->set_parent_sleeping(false);
        collector_sleeping_.store(false, std::memory_order_seq_cst);
        transport_->drain_doorbell();
        last_event = monotonic_ns();
      }
      for (int i = 0; i < n; ++i) handle_event(evs[i].data.u64);
    }
    std::call_once(released_, [this] { release_resources(); });
    collector_running_.store(false, std::memory_order_release);
    if (opts_.debug_collector_exit_delay.count() > 0)
      std::this_thread::sleep_for(opts_.debug_collector_exit_delay);
  }

  void release_resources() {
    publish_deferred();
    std::vector<RemoteWork*> leftovers;
    {
      std::lock_guard lock(mu_);
      leftovers.assign(pending_.begin(), pending_.end());
      pending_.clear();
    }
    for (RemoteWork* t : leftovers) {
      t->shared_state().try_set_exception(std::make_exception_ptr(ShutdownError()));
      release(t);
    }
    {
      std::lock_guard lock(mu_);
      slots_.clear();
      by_id_.clear();
    }
    launcher_.reset();
    epoll_.reset();
    transport_->close();  // the object stays: late callers find it closed
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    finished_cv_.notify_all();
  }

  EngineOptions opts_;
  std::unique_ptr<PoolTransport> transport_;
  std::shared_ptr<Launcher> launcher_;
  UniqueFd epoll_;

  mutable std::mutex mu_;
  std::deque<RemoteWork*> pending_;  // each holds a reference
  std::vector<WorkerPtr> slots_;
  std::map<std::uint64_t, WorkerPtr> by_id_;
  std::uint64_t next_worker_id_ = 0;
  bool shutdown_ = false;
  bool terminating_ = false;
  std::string broken_;
  bool corrupt_next_ = false;
  bool collector_started_ = false;
  bool finished_ = false;
  std::condition_variable finished_cv_;
  std::thread collector_;  // written once under mu_, joined under join_mu_
  std::mutex join_mu_;
  std::thread::id collector_id_;
  std::once_flag released_;

  std::atomic<bool> broken_flag_{false};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> collector_running_{false};
  std::atomic<std::uint64_t> workers_version_{0};
  std::atomic<std::uint64_t> activity_{0};  // bumped by every submit
  std::atomic<int> helpers_{0};
  std::mutex deferred_mu_;
  std::vector<Outcome> deferred_;  // collected elsewhere, completed by the collector
  std::atomic<std::size_t> deferred_count_{0};
  bool submitters_collect_ = true;
  std::atomic<int> ready_workers_{0};  // alive and past the hand-shake
  // Workers that died before they were ready since one last became ready (guarded by mu_);
  // at kStartupDeathLimit a replace_worker pool stops replacing them and breaks.
  unsigned startup_deaths_ = 0;
  static constexpr unsigned kStartupDeathLimit = 3;
  std::atomic<std::size_t> inflight_total_{0};
  std::atomic<std::size_t> started_count_{0};
  std::atomic<bool> collector_sleeping_{false};
};

}  // namespace

std::shared_ptr<ProcessEngine> ProcessEngine::create(EngineOptions options) {
  auto engine = std::make_shared<Engine>(std::move(options));
  // Started now (after a fork zygote exists, so nothing forks it): a thread created at
  // the first submit can wait milliseconds for a CPU behind the spinning parties.
  engine->start_collector();
  return engine;
}

}  // namespace concur::detail
