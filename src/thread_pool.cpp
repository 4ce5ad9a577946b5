// ThreadPoolExecutor's machinery: a locked FIFO of tasks, workers that spin briefly and
// then sleep on a futex, and CPython's rules for starting threads and for breakage.
#include "concur/thread_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "concur/detail/futex.hpp"

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

  int max_workers() const noexcept { return static_cast<int>(max_workers_); }
  std::size_t thread_count() const noexcept { return nthreads_.load(std::memory_order_relaxed); }

  void push(TaskPtr task) {
    {
      std::lock_guard lock(qmu_);
      check_accepting();
      queue_.push_back(task.detach());
      queued_.fetch_add(1, std::memory_order_seq_cst);
    }
    after_push(1);
  }

  void push_bulk(std::span<TaskPtr> tasks) {
    if (tasks.empty()) return;
    {
      std::lock_guard lock(qmu_);
      check_accepting();
      for (auto& t : tasks) queue_.push_back(t.detach());
      queued_.fetch_add(tasks.size(), std::memory_order_seq_cst);
    }
    after_push(tasks.size());
  }

  void shutdown(bool wait, bool cancel_futures) {
    std::vector<SharedState*> cancelled;
    {
      std::lock_guard lock(qmu_);
      shutdown_ = true;
      stop_flag_.store(true, std::memory_order_seq_cst);
      if (cancel_futures) {
        cancelled.assign(queue_.begin(), queue_.end());
        queue_.clear();
        queued_.store(0, std::memory_order_seq_cst);
      }
    }
    for (SharedState* t : cancelled) {
      t->cancel();
      t->release();
    }
    wake_seq_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&wake_seq_);
    if (wait) join_workers();
  }

 private:
  void check_accepting() const {
    if (!broken_.empty()) throw BrokenThreadPool(broken_);
    if (shutdown_) throw ShutdownError();
  }

  void after_push(std::size_t n) {
    std::size_t queued = queued_.load(std::memory_order_seq_cst);
    // Start a thread only when the queue outgrows the threads that are free to take it,
    // so that an idle thread is always reused first (CPython's rule, without its race).
    std::size_t threads = nthreads_.load(std::memory_order_acquire);
    std::size_t busy = busy_.load(std::memory_order_acquire);
    std::size_t idle = threads > busy ? threads - busy : 0;
    if (queued > idle && threads < max_workers_) spawn(queued - idle);
    // Wake sleepers only for work the spinning workers will not pick up themselves.
    int sleepers = sleepers_.load(std::memory_order_seq_cst);
    if (sleepers > 0) {
      std::size_t spinning = static_cast<std::size_t>(spinners_.load(std::memory_order_seq_cst));
      if (queued > spinning) {
        std::size_t want = std::min<std::size_t>(n, queued - spinning);
        wake_seq_.fetch_add(1, std::memory_order_seq_cst);
        futex_wake(&wake_seq_, static_cast<int>(std::min<std::size_t>(want, INT_MAX)));
      }
    }
  }

  void spawn(std::size_t wanted) {
    std::lock_guard lock(tmu_);
    for (; wanted > 0; --wanted) {
      std::size_t n = nthreads_.load(std::memory_order_relaxed);
      if (n >= max_workers_) return;
      {
        std::lock_guard q(qmu_);
        if (shutdown_ || !broken_.empty()) return;
      }
      threads_.emplace_back(&ThreadPoolCore::worker_main, shared_from_this(), n);
      nthreads_.store(n + 1, std::memory_order_release);
    }
  }

  enum class Pop { got, empty, exit };

  Pop pop(SharedState*& out) {
    std::lock_guard lock(qmu_);
    if (queue_.empty()) return shutdown_ || !broken_.empty() ? Pop::exit : Pop::empty;
    out = queue_.front();
    queue_.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
    busy_.fetch_add(1, std::memory_order_acq_rel);
    return Pop::got;
  }

  // Waits until there may be work (or shutdown). Spins first if few others are spinning.
  void wait_for_work() {
    if (spinners_.fetch_add(1, std::memory_order_seq_cst) < max_spinners_) {
      bool got = spin_until([this] {
        return queued_.load(std::memory_order_relaxed) > 0 ||
               stop_flag_.load(std::memory_order_relaxed);
      });
      spinners_.fetch_sub(1, std::memory_order_seq_cst);
      if (got) return;
    } else {
      spinners_.fetch_sub(1, std::memory_order_seq_cst);
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::uint32_t seq = wake_seq_.load(std::memory_order_seq_cst);
    if (queued_.load(std::memory_order_seq_cst) == 0 && !stop_flag_.load(std::memory_order_seq_cst))
      futex_wait(&wake_seq_, seq);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
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
      SharedState* task = nullptr;
      switch (pop(task)) {
        case Pop::got: {
          bool publish = task->run();
          // Idle before the result is visible: whoever it wakes sees this thread free.
          busy_.fetch_sub(1, std::memory_order_acq_rel);
          if (publish) task->end_complete();
          task->release();
          break;
        }
        case Pop::empty:
          wait_for_work();
          break;
        case Pop::exit:
          return;
      }
    }
  }

  void break_pool(const std::string& why) {
    std::vector<SharedState*> failed;
    {
      std::lock_guard lock(qmu_);
      if (broken_.empty()) broken_ = why;
      failed.assign(queue_.begin(), queue_.end());
      queue_.clear();
      queued_.store(0, std::memory_order_seq_cst);
    }
    stop_flag_.store(true, std::memory_order_seq_cst);
    auto error = std::make_exception_ptr(BrokenThreadPool(why));
    for (SharedState* t : failed) {
      t->try_set_exception(error);
      t->release();
    }
    wake_seq_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&wake_seq_);
  }

  void join_workers() {
    // A worker may call shutdown(wait=true), e.g. from a done-callback: it must not join
    // itself (or wait for a joiner that is joining it), so it leaves the joining to others.
    bool in_worker = current_pool() == this;
    std::unique_lock join(join_mu_, std::defer_lock);
    if (!in_worker) join.lock();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(tmu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) {
      if (t.get_id() == std::this_thread::get_id())
        t.detach();
      else if (in_worker)
        t.detach();  // the thread ends by itself once the queue is drained
      else
        t.join();
    }
  }

  static ThreadPoolCore*& current_pool() {
    static thread_local ThreadPoolCore* pool = nullptr;
    return pool;
  }

  ThreadPoolOptions opts_;
  std::size_t max_workers_ = 0;
  unsigned max_spinners_ = 0;

  std::mutex qmu_;
  std::deque<SharedState*> queue_;  // each holds one reference
  bool shutdown_ = false;
  std::string broken_;

  std::atomic<std::size_t> queued_{0};
  std::atomic<std::size_t> busy_{0};
  std::atomic<std::size_t> nthreads_{0};
  std::atomic<bool> stop_flag_{false};

  std::atomic<std::uint32_t> wake_seq_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<unsigned> spinners_{0};

  std::mutex tmu_;
  std::vector<std::thread> threads_;
  std::mutex join_mu_;

 public:
  ~ThreadPoolCore() {
    for (SharedState* t : queue_) t->release();
  }
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
