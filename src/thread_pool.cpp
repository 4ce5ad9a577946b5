// ThreadPoolExecutor's machinery: a locked FIFO of tasks, workers that spin briefly and
// then sleep on a futex, and CPython's rules for starting threads and for breakage.
#include "concur/thread_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/detail/mpsc_queue.hpp"

namespace concur::detail {

namespace {
std::atomic<unsigned> pool_counter{0};
}  // namespace

class ThreadPoolCore : public std::enable_shared_from_this<ThreadPoolCore> {
 public:
  explicit ThreadPoolCore(ThreadPoolOptions o) : opts_(std::move(o)) {
    unsigned cpus = online_cpus();
    if (!opts_.max_workers) opts_.max_workers = static_cast<int>(std::min(32u, cpus + 4));
    if (*opts_.max_workers < 1) throw std::invalid_argument("max_workers must be greater than 0");
    max_workers_ = static_cast<std::size_t>(*opts_.max_workers);
    if (opts_.thread_name_prefix.empty())
      opts_.thread_name_prefix = "ThreadPool-" + std::to_string(pool_counter.fetch_add(1));
    max_spinners_ = cpus > 1 ? std::max(1u, cpus / 4) : 0;
  }

  ~ThreadPoolCore() {
    while (QueueLink* n = queue_.pop()) static_cast<SharedState*>(n)->release();
    // Left joinable only when the pool was destroyed from one of its own tasks: the last
    // worker to exit drops the last reference, here, and cannot join itself.
    for (auto& t : threads_)
      if (t.joinable()) t.detach();
  }

  int max_workers() const noexcept { return static_cast<int>(max_workers_); }
  std::size_t thread_count() const noexcept { return nthreads_.load(std::memory_order_relaxed); }

  void push(TaskPtr task) {
    SharedState* t = task.detach();
    if (!enter_push()) {
      t->release();
      throw_not_accepting();
    }
    pushed_.fetch_add(1, std::memory_order_seq_cst);  // counted before anyone can take it
    queue_.push(t);
    leave_push(1);
  }

  void push_bulk(std::span<TaskPtr> tasks) {
    if (tasks.empty()) return;
    if (!enter_push()) throw_not_accepting();
    SharedState* first = tasks.front().detach();
    SharedState* last = first;
    for (std::size_t i = 1; i < tasks.size(); ++i) {
      SharedState* t = tasks[i].detach();
      last->next_link.store(t, std::memory_order_relaxed);
      last = t;
    }
    pushed_.fetch_add(tasks.size(), std::memory_order_seq_cst);
    queue_.push_chain(first, last);
    leave_push(tasks.size());
  }

  void shutdown(bool wait, bool cancel_futures) {
    stop_.store(true, std::memory_order_seq_cst);
    if (cancel_futures) {
      std::vector<SharedState*> cancelled;
      {
        std::lock_guard lock(consumer_mu_);
        while (QueueLink* n = pop_locked()) cancelled.push_back(static_cast<SharedState*>(n));
      }
      finished_.fetch_add(cancelled.size(), std::memory_order_seq_cst);
      for (SharedState* t : cancelled) {
        t->cancel();
        t->release();
      }
    }
    wake_all();
    if (wait) join_workers();
  }

 private:
  // Submitters register while they push, so that shutdown can tell "queue empty" from
  // "a push is on its way" and no accepted task is ever stranded without a worker.
  bool enter_push() {
    pushers_.fetch_add(1, std::memory_order_seq_cst);
    if (stop_.load(std::memory_order_seq_cst) || broken_flag_.load(std::memory_order_seq_cst)) {
      pushers_.fetch_sub(1, std::memory_order_seq_cst);
      return false;
    }
    return true;
  }

  void leave_push(std::size_t n) {
    // Still counted as pushing until the end, so that shutdown(wait=true) also waits for a
    // worker this push may start below (a submit racing shutdown is run, never stranded).
    struct Leave {
      std::atomic<std::size_t>& pushers;
      ~Leave() { pushers.fetch_sub(1, std::memory_order_seq_cst); }
    } leave{pushers_};
    // The pool broke while we pushed: fail what we (and anyone else) left in the queue.
    if (broken_flag_.load(std::memory_order_seq_cst)) {
      fail_queued();
      return;
    }
    // Start a thread only when the unfinished tasks (queued or running) outnumber the
    // threads, so an idle thread is always reused first (CPython's rule, without its race:
    // a worker counts its task finished before the result becomes visible). Counting
    // unfinished tasks, not "queued minus idle", leaves no window between a worker taking
    // a task and marking itself busy in which a second task would wait behind the first.
    // finished_ is read first: every task it counts was counted in pushed_ before.
    std::size_t threads = nthreads_.load(std::memory_order_acquire);
    if (threads < max_workers_) {
      std::size_t finished = finished_.load(std::memory_order_seq_cst);
      std::size_t unfinished = pushed_.load(std::memory_order_seq_cst) - finished;
      if (unfinished > threads) spawn(unfinished - threads);
    }
    (void)n;
    notify_work();
  }

  [[noreturn]] void throw_not_accepting() {
    if (broken_flag_.load(std::memory_order_acquire)) {
      std::lock_guard lock(broken_mu_);
      throw BrokenThreadPool(broken_);
    }
    throw ShutdownError();
  }

  // Wakes one sleeping worker unless a worker is already spinning or on its way to (it will
  // find the work itself): at most one wake-up syscall per burst of submits.
  void notify_work() {
    // sleepers_ changes rarely (its own cache line), so check it first.
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    if (spinners_.load(std::memory_order_seq_cst) != 0) return;
    if (waking_.exchange(true, std::memory_order_seq_cst)) return;
    wake_seq_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&wake_seq_, 1);
  }

  void wake_all() {
    wake_seq_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&wake_seq_);
  }

  void spawn(std::size_t wanted) {
    std::lock_guard lock(threads_mu_);
    for (; wanted > 0; --wanted) {
      std::size_t n = nthreads_.load(std::memory_order_relaxed);
      // No stop_ check: a push accepted just before shutdown still needs a worker.
      if (n >= max_workers_ || broken_flag_.load()) return;
      threads_.emplace_back(&ThreadPoolCore::worker_main, shared_from_this(), n);
      nthreads_.store(n + 1, std::memory_order_release);
    }
  }

  QueueLink* pop_locked() {
    return queue_.pop();
  }

  SharedState* pop() {
    std::lock_guard lock(consumer_mu_);
    return static_cast<SharedState*>(pop_locked());
  }

  bool may_exit() const {
    return (stop_.load(std::memory_order_seq_cst) &&
            pushers_.load(std::memory_order_seq_cst) == 0 && !queue_.maybe_nonempty()) ||
           broken_flag_.load(std::memory_order_seq_cst);
  }

  // Spins (if few others do) and then sleeps until there may be work. Returns at once,
  // without sleeping, when work or shutdown is visible.
  void wait_for_work() {
    auto has_news = [this] {
      return queue_.maybe_nonempty() || stop_.load(std::memory_order_relaxed) ||
             broken_flag_.load(std::memory_order_relaxed);
    };
    if (spinners_.fetch_add(1, std::memory_order_seq_cst) < max_spinners_) {
      bool news = spin_until([this] {
        return queue_.probably_nonempty() || stop_.load(std::memory_order_relaxed) ||
               broken_flag_.load(std::memory_order_relaxed);
      });
      spinners_.fetch_sub(1, std::memory_order_seq_cst);
      if (news) return;
    } else {
      spinners_.fetch_sub(1, std::memory_order_seq_cst);
    }
    // The waking_ gate promises "a worker is awake and will look at the queue". Clear it
    // before the final look (so the promise holds for anything pushed before) and after
    // waking (so a long task does not keep other sleepers from being woken).
    waking_.store(false, std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::uint32_t seq = wake_seq_.load(std::memory_order_seq_cst);
    if (!has_news()) futex_wait(&wake_seq_, seq);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    waking_.store(false, std::memory_order_seq_cst);
  }

  static void worker_main(std::shared_ptr<ThreadPoolCore> self, std::size_t index) {
    self->run_worker(index);
  }

  void run_worker(std::size_t index) {
    std::string name = opts_.thread_name_prefix + "_" + std::to_string(index);
    if (name.size() > 15) name.resize(15);  // the kernel's limit for a thread name
    pthread_setname_np(pthread_self(), name.c_str());
    current_pool() = this;
    if (opts_.initializer) {
      try {
        opts_.initializer();
      } catch (...) {
        break_pool("A thread initializer failed, the thread pool is not usable anymore");
        return;
      }
    }
    for (;;) {
      if (SharedState* task = pop()) {
        // More queued and nobody looking: wake a helper before working (Go's scheduler
        // does the same), so a burst spreads over the workers without a syscall per task.
        if (queue_.maybe_nonempty()) notify_work();
        bool publish = task->run();
        // Idle before the result is visible: whoever it wakes sees this thread free.
        finished_.fetch_add(1, std::memory_order_seq_cst);
        if (publish) task->end_complete();
        task->release();
        continue;
      }
      if (may_exit()) return;
      wait_for_work();
    }
  }

  void break_pool(const std::string& why) {
    {
      std::lock_guard lock(broken_mu_);
      if (broken_.empty()) broken_ = why;
    }
    broken_flag_.store(true, std::memory_order_seq_cst);
    fail_queued();
    wake_all();
  }

  void fail_queued() {
    std::vector<SharedState*> failed;
    {
      std::lock_guard lock(consumer_mu_);
      while (QueueLink* n = pop_locked()) failed.push_back(static_cast<SharedState*>(n));
    }
    if (failed.empty()) return;
    finished_.fetch_add(failed.size(), std::memory_order_seq_cst);
    std::string why;
    {
      std::lock_guard lock(broken_mu_);
      why = broken_;
    }
    auto error = std::make_exception_ptr(BrokenThreadPool(why));
    for (SharedState* t : failed) {
      t->try_set_exception(error);
      t->release();
    }
  }

  void join_workers() {
    // From one of its own workers (e.g. a done-callback calling shutdown(wait=true)) the
    // pool cannot wait for itself: it returns and leaves the joining to the owner, whose
    // own shutdown(true) or destructor still waits for every thread.
    if (current_pool() == this) return;
    std::lock_guard join(join_mu_);
    for (;;) {
      // A submit that was accepted before shutdown may still be starting a worker: keep
      // joining until no push is in flight and no thread is left.
      bool no_pushers = pushers_.load(std::memory_order_seq_cst) == 0;
      std::vector<std::thread> threads;
      {
        std::lock_guard lock(threads_mu_);
        threads.swap(threads_);
      }
      for (auto& t : threads) t.join();
      if (threads.empty() && no_pushers) return;
      if (threads.empty()) std::this_thread::yield();
    }
  }

  static ThreadPoolCore*& current_pool() {
    static thread_local ThreadPoolCore* pool = nullptr;
    return pool;
  }

  ThreadPoolOptions opts_;
  std::size_t max_workers_ = 0;
  unsigned max_spinners_ = 0;

  MpscQueue queue_;  // each queued task holds one reference
  std::mutex consumer_mu_;

  // Written by submitters.
  alignas(64) std::atomic<std::size_t> pushed_{0};
  std::atomic<std::size_t> pushers_{0};
  // Written by workers.
  alignas(64) std::atomic<std::size_t> finished_{0};  // tasks run, cancelled or failed
  // Worker states, read by submitters; each on its own line, as they change at different rates.
  alignas(64) std::atomic<unsigned> spinners_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  alignas(64) std::atomic<bool> waking_{false};
  std::atomic<std::uint32_t> wake_seq_{0};
  alignas(64) std::atomic<bool> stop_{false};
  std::atomic<bool> broken_flag_{false};
  std::atomic<std::size_t> nthreads_{0};

  std::mutex broken_mu_;
  std::string broken_;
  std::mutex threads_mu_;
  std::vector<std::thread> threads_;
  std::mutex join_mu_;
};

}  // namespace concur::detail

namespace concur {

ThreadPoolExecutor::ThreadPoolExecutor() : ThreadPoolExecutor(ThreadPoolOptions{}) {}

ThreadPoolExecutor::ThreadPoolExecutor(int max_workers)
    : ThreadPoolExecutor(ThreadPoolOptions{.max_workers = max_workers}) {}

ThreadPoolExecutor::ThreadPoolExecutor(ThreadPoolOptions options)
    : core_(std::make_shared<detail::ThreadPoolCore>(std::move(options))) {}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown(true); }

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  core_->shutdown(wait, cancel_futures);
}

int ThreadPoolExecutor::max_workers() const noexcept { return core_->max_workers(); }
std::size_t ThreadPoolExecutor::thread_count() const noexcept { return core_->thread_count(); }

void ThreadPoolExecutor::push(detail::TaskPtr task) { core_->push(std::move(task)); }
void ThreadPoolExecutor::enqueue_bulk(std::span<detail::TaskPtr> tasks) { core_->push_bulk(tasks); }
std::size_t ThreadPoolExecutor::default_map_window() const {
  return std::max<std::size_t>(64, 2 * static_cast<std::size_t>(core_->max_workers()));
}

}  // namespace concur
