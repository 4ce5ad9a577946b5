// Pipe and Connection (concur/connection.hpp): framed messages over pipes.
//
// Transport: a duplex Pipe is two kernel pipes, one per direction (a one-way Pipe one);
// each end holds the read end of one and the write end of the other. Pipes rather than a
// socketpair because a pipe hand-off costs about half of a unix socket's on this kind of
// machine, which is what a blocking round trip is made of. EOF comes for free: reading a
// pipe whose write ends are all closed returns 0, writing one whose read ends are all
// closed fails with EPIPE. SIGPIPE, which that write would also raise, is blocked in the
// sending thread for the duration of the write and the one it caused is consumed, so the
// program's signal handling is left as it was.
//
// Frame: a 16-byte header [u64 length][u32 magic][u32 check], then `length` bytes. The
// check binds the length to the magic, so a stream that lost its place is recognised
// instead of being read as a huge length. The receiver reads ahead into a per-connection
// buffer, so a small message costs one read.
//
// Waiting: a page of shared memory (one memfd per Pipe, shared by both ends) counts the
// messages sent in each direction and records the CPU each end last sent from. A waiting
// receiver spins on its counter - memory reads, no system calls - for a short budget, and
// then sleeps in the read itself (or in poll(2) with a deadline). It does not spin when
// its peer last ran on its own CPU: the answer cannot come while the receiver holds that
// CPU. The counters only decide when to look at the pipe, never what is read, so a stale
// or missing one costs at worst a wasted spin.
#include "concur/connection.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "concur/detail/ipc_segment.hpp"

namespace concur {

namespace detail {

namespace {

constexpr std::uint32_t kFrameMagic = 0x4e436e63;  // "cnCN"
constexpr std::size_t kFrameHeader = 16;
constexpr std::size_t kReadAhead = std::size_t{64} << 10;
constexpr std::size_t kKeepBuffer = std::size_t{1} << 20;
constexpr std::uint64_t kMaxFrame = std::uint64_t{1} << 40;  // beyond: a corrupt header

std::uint32_t frame_check(std::uint64_t len) noexcept {
  auto lo = static_cast<std::uint32_t>(len);
  auto hi = static_cast<std::uint32_t>(len >> 32);
  return (lo * 0x9e3779b1u) ^ hi ^ 0x5a17c0deu;
}

// preadv2(RWF_NOWAIT) on pipes needs Linux 5.x; older kernels say EOPNOTSUPP once.
std::atomic<bool> g_nowait_unsupported{false};

}  // namespace

// The shared page: messages sent towards end 0 and towards end 1.
struct PipeCounters {
  alignas(64) std::atomic<std::uint64_t> sent_to[2];
  alignas(64) std::atomic<std::int32_t> cpu_of[2];  // where each end last sent from
};

struct ConnState {
  UniqueFd rfd;  // read end of the incoming pipe (none: write-only)
  UniqueFd wfd;  // write end of the outgoing pipe (none: read-only)
  SegmentPtr seg;  // the counters (null: spin by re-trying the pipe)
  std::atomic<std::uint64_t>* in_count = nullptr;   // messages sent to this end
  std::atomic<std::uint64_t>* out_count = nullptr;  // messages sent by this end
  std::atomic<std::int32_t>* my_cpu = nullptr;
  std::atomic<std::int32_t>* peer_cpu = nullptr;
  std::uint32_t side = 0;
  bool broken = false;  // a corrupt header was read: no boundary can be trusted
  std::int64_t spin_ns = kSpinFor.count();
  std::vector<std::byte> buf;
  std::size_t begin = 0, end = 0;  // unread bytes in buf

  bool open() const noexcept { return rfd || wfd; }
};

namespace {

// ---------------------------------------------------------------- reading
// One non-blocking read into the buffer: > 0 bytes read, 0 at end of stream, -1 when
// nothing is there yet.
ssize_t read_some(ConnState& st) {
  for (;;) {
    iovec iov{st.buf.data() + st.end, st.buf.size() - st.end};
    ssize_t n;
    if (!g_nowait_unsupported.load(std::memory_order_relaxed)) {
      n = ::preadv2(st.rfd.get(), &iov, 1, -1, RWF_NOWAIT);
      if (n < 0 && errno == EOPNOTSUPP) {
        g_nowait_unsupported.store(true, std::memory_order_relaxed);
        continue;
      }
    } else {
      pollfd p{st.rfd.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) return -1;
      n = ::read(st.rfd.get(), iov.iov_base, iov.iov_len);
    }
    if (n >= 0) {
      st.end += static_cast<std::size_t>(n);
      return n;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
    throw_os_error("Connection.recv", errno);
  }
}

bool peer_on_my_cpu(const ConnState& st) noexcept {
  return st.peer_cpu && st.peer_cpu->load(std::memory_order_relaxed) == ::sched_getcpu();
}

// Spins until the counter of messages sent to this end moves away from `seen` (without
// counters: re-tries the pipe), then reads once. True (with n from read_some) when
// something came within the spin budget.
bool spin_read(ConnState& st, std::uint64_t seen, ssize_t& n) {
  if (st.spin_ns <= 0 || peer_on_my_cpu(st)) return false;
  const std::chrono::nanoseconds budget(st.spin_ns);
  if (st.in_count) {
    if (!spin_until([&] { return st.in_count->load(std::memory_order_acquire) != seen; }, budget))
      return false;
    n = read_some(st);
    return n != -1;
  }
  // Each try is a system call, so yield after every one: the peer about to answer may be
  // waiting for this very CPU.
  const auto until = Clock::now() + budget;
  for (;;) {
    ::sched_yield();
    if ((n = read_some(st)) != -1) return true;
    if (Clock::now() >= until) return false;
  }
}

std::uint64_t sent_to_me(const ConnState& st) noexcept {
  return st.in_count ? st.in_count->load(std::memory_order_acquire) : 0;
}

// Sleeps in poll(2) until the pipe is readable (or hung up); false when the deadline
// passed first.
bool sleep_readable(ConnState& st, const Deadline& deadline) {
  for (;;) {
    int ms = -1;
    if (deadline) {
      auto left = *deadline - Clock::now();
      if (left <= left.zero()) return false;
      ms = static_cast<int>(std::min<std::int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(left).count(), 1 << 30));
    }
    pollfd p{st.rfd.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let the read report it
  }
}

// Makes room in the buffer for `want` unread bytes in all.
void make_room(ConnState& st, std::size_t want) {
  if (st.buf.size() - st.begin >= want && st.buf.size() > st.end) return;
  std::size_t have = st.end - st.begin;
  std::size_t size = std::max({want, kReadAhead, st.buf.size()});
  if (size > st.buf.size() && st.begin == 0) {
    st.buf.resize(size);
    return;
  }
  std::vector<std::byte> fresh(size);
  if (have) std::memcpy(fresh.data(), st.buf.data() + st.begin, have);
  st.buf.swap(fresh);
  st.begin = 0;
  st.end = have;
}

[[noreturn]] void throw_eof(const ConnState& st) {
  if (st.end != st.begin)
    throw EOFError("concur: Connection.recv: the other end closed in the middle of a message");
  throw EOFError("concur: Connection.recv: the other end is closed");
}

// Reads until `want` unread bytes are buffered: a non-blocking read, a bounded spin, then
// a blocking read (poll(2) with a deadline). False: the deadline passed first.
bool fill(ConnState& st, std::size_t want, const Deadline& deadline) {
  if (st.end - st.begin >= want) return true;
  make_room(st, want);
  bool spun = false;
  while (st.end - st.begin < want) {
    if (!deadline && !spun && (st.spin_ns <= 0 || peer_on_my_cpu(st))) {
      spun = true;  // no spin coming: go straight to the blocking read below
    } else {
      std::uint64_t seen = sent_to_me(st);  // before the read: a later send moves it
      ssize_t n = read_some(st);
      if (n > 0) continue;
      if (n == 0) throw_eof(st);
      if (!spun) {
        spun = true;
        if (spin_read(st, seen, n)) {
          if (n == 0) throw_eof(st);
          continue;
        }
      }
    }
    if (!deadline) {
      // No deadline: sleep in the read itself (one system call instead of poll + read).
      ssize_t got = ::read(st.rfd.get(), st.buf.data() + st.end, st.buf.size() - st.end);
      if (got > 0) {
        st.end += static_cast<std::size_t>(got);
        continue;
      }
      if (got == 0) throw_eof(st);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) throw_os_error("Connection.recv", errno);
      // A pipe made non-blocking through fileno(): sleep in poll(2) instead.
    }
    if (!sleep_readable(st, deadline)) return false;
  }
  return true;
}

void consume(ConnState& st, std::size_t n) noexcept {
  st.begin += n;
  if (st.begin == st.end) {
    st.begin = st.end = 0;
    if (st.buf.size() > kKeepBuffer) std::vector<std::byte>().swap(st.buf);
  }
}

// Reads and drops n bytes (an over-long message), keeping the stream in step.
void discard(ConnState& st, std::uint64_t n) {
  while (n > 0) {
    std::size_t have = st.end - st.begin;
    if (have == 0) {
      fill(st, 1, std::nullopt);
      continue;
    }
    std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(have, n));
    consume(st, take);
    n -= take;
  }
}

// ---------------------------------------------------------------- writing
// Blocks SIGPIPE in this thread for a scope; a SIGPIPE raised meanwhile is consumed.
class NoSigpipe {
 public:
  NoSigpipe() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~NoSigpipe() {
    if (raised_ && !sigismember(&old_, SIGPIPE)) {
      timespec zero{};
      while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  NoSigpipe(const NoSigpipe&) = delete;
  NoSigpipe& operator=(const NoSigpipe&) = delete;
  void raised() noexcept { raised_ = true; }

 private:
  sigset_t pipe_, old_;
  bool raised_ = false;
};

}  // namespace

void conn_send(ConnState& st, std::span<const std::byte> payload) {
  if (!st.wfd) throw OSError("concur: Connection.send: this end is read-only", EBADF);
  std::byte header[kFrameHeader];
  std::uint64_t len = payload.size();
  std::uint32_t magic = kFrameMagic, check = frame_check(len);
  std::memcpy(header, &len, 8);
  std::memcpy(header + 8, &magic, 4);
  std::memcpy(header + 12, &check, 4);
  iovec iov[2] = {{header, kFrameHeader},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  iovec* next = iov;
  int count = payload.empty() ? 1 : 2;
  {
    NoSigpipe guard;
    for (;;) {
      ssize_t n = ::writev(st.wfd.get(), next, count);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        if (err == EPIPE) {
          guard.raised();
          throw BrokenPipeError("concur: Connection.send: the other end is closed", err);
        }
        throw_os_error("Connection.send", err);
      }
      // A large message goes in several writes (the pipe holds 64 KiB): advance.
      auto sent = static_cast<std::size_t>(n);
      while (count > 0 && sent >= next->iov_len) {
        sent -= next->iov_len;
        ++next;
        --count;
      }
      if (count == 0) break;
      next->iov_base = static_cast<std::byte*>(next->iov_base) + sent;
      next->iov_len -= sent;
    }
  }
  if (st.out_count) {
    st.out_count->fetch_add(1, std::memory_order_release);
    st.my_cpu->store(::sched_getcpu(), std::memory_order_relaxed);
  }
}

std::span<const std::byte> conn_recv(ConnState& st, std::size_t maxlength) {
  if (!st.rfd) throw OSError("concur: Connection.recv: this end is write-only", EBADF);
  if (st.broken)
    throw SerializationError("concur: Connection.recv: the stream is corrupt (an earlier frame "
                             "header failed its check); no message boundary can be trusted");
  if (st.begin == st.end && st.buf.size() > kKeepBuffer) std::vector<std::byte>().swap(st.buf);
  fill(st, kFrameHeader, std::nullopt);
  const std::byte* h = st.buf.data() + st.begin;
  std::uint64_t len;
  std::uint32_t magic, check;
  std::memcpy(&len, h, 8);
  std::memcpy(&magic, h + 8, 4);
  std::memcpy(&check, h + 12, 4);
  if (magic != kFrameMagic || check != frame_check(len) || len > kMaxFrame) {
    st.broken = true;
    throw SerializationError("concur: Connection.recv: corrupt frame header (the stream is not "
                             "a concur Connection's, or lost its place)");
  }
  if (len > maxlength) {
    consume(st, kFrameHeader);
    discard(st, len);
    throw SerializationError("concur: Connection.recv_bytes: a message of " + std::to_string(len) +
                             " bytes is longer than maxlength " + std::to_string(maxlength) +
                             " (it was discarded)");
  }
  auto n = static_cast<std::size_t>(len);
  fill(st, kFrameHeader + n, std::nullopt);
  const std::byte* p = st.buf.data() + st.begin + kFrameHeader;
  // Consumed now so that a decode error leaves the stream at the next message; the bytes
  // stay where they are until the next receive.
  st.begin += kFrameHeader + n;
  if (st.begin == st.end) st.begin = st.end = 0;
  return {p, n};
}

bool conn_poll(ConnState& st, const Deadline& deadline) {
  if (!st.rfd) throw OSError("concur: Connection.poll: this end is write-only", EBADF);
  if (st.end != st.begin || st.broken) return true;
  make_room(st, 1);
  std::uint64_t seen = sent_to_me(st);
  ssize_t n = read_some(st);
  if (n >= 0) return true;  // data, or end of stream (recv then raises EOFError)
  if (expired(deadline)) return false;
  if (spin_read(st, seen, n)) return true;
  return sleep_readable(st, deadline);
}

// ---------------------------------------------------------------- crossing into a Process
namespace {

void attach_counters(ConnState& st, SegmentPtr seg, std::uint32_t side) {
  if (seg->size() < sizeof(PipeCounters)) return;
  auto* c = reinterpret_cast<PipeCounters*>(seg->base());
  st.in_count = &c->sent_to[side];
  st.out_count = &c->sent_to[1 - side];
  st.my_cpu = &c->cpu_of[side];
  st.peer_cpu = &c->cpu_of[1 - side];
  st.side = side;
  st.seg = std::move(seg);
}

constexpr std::uint32_t kNoCounters = 2;

}  // namespace

void ConnAccess::encode(Writer& w, const Connection& c) {
  if (!handoff::exporter())
    throw SerializationError(
        "concur: a Connection can only be passed to a concur::Process as an argument (its "
        "pipes cannot travel inside a Queue, a Pipe message or a pool task)");
  if (!c.st_ || !c.st_->open())
    throw SerializationError("concur: a closed Connection cannot be passed to a process");
  if (c.st_->end != c.st_->begin)
    throw SerializationError(
        "concur: this Connection has received data not read yet; it cannot be passed to a "
        "process (the data would stay behind)");
  const ConnState& st = *c.st_;
  handoff::FdRef none{};
  handoff::FdRef r = st.rfd ? handoff::export_fd(st.rfd.get(), /*must_pass=*/false) : none;
  handoff::FdRef wr = st.wfd ? handoff::export_fd(st.wfd.get(), /*must_pass=*/false) : none;
  handoff::FdRef counters = st.seg ? handoff::export_fd(st.seg->fd(), /*must_pass=*/false) : none;
  concur::detail::encode(w, static_cast<std::uint8_t>(st.rfd ? 1 : 0));
  concur::detail::encode(w, static_cast<std::uint8_t>(st.wfd ? 1 : 0));
  concur::detail::encode(w, r);
  concur::detail::encode(w, wr);
  concur::detail::encode(w, st.seg ? st.side : kNoCounters);
  concur::detail::encode(w, counters);
}

Connection ConnAccess::decode(Reader& r) {
  auto has_r = concur::detail::decode<std::uint8_t>(r);
  auto has_w = concur::detail::decode<std::uint8_t>(r);
  auto rref = concur::detail::decode<handoff::FdRef>(r);
  auto wref = concur::detail::decode<handoff::FdRef>(r);
  auto side = concur::detail::decode<std::uint32_t>(r);
  auto counters = concur::detail::decode<handoff::FdRef>(r);
  if (!handoff::importer())
    throw SerializationError("concur: a Connection can only be received as a Process argument");
  auto st = std::make_unique<ConnState>();
  if (has_r) st->rfd = handoff::import_fd(rref, O_RDONLY);
  if (has_w) st->wfd = handoff::import_fd(wref, O_WRONLY);
  if (side < kNoCounters) {
    try {
      ShmPart part;
      part.dev = counters.dev;
      part.ino = counters.ino;
      int received = handoff::importer()->peek(counters);
      part.fd = received >= 0 ? received : counters.fd;
      part.pid = received >= 0 ? ::getpid() : counters.pid;
      attach_counters(*st, Segment::open(part), side);
    } catch (const OSError&) {
      // Without the counters the connection works the same; it spins on the pipe.
    }
  }
  return Connection(std::move(st));
}

}  // namespace detail

// ---------------------------------------------------------------- Connection
Connection::Connection() noexcept = default;
Connection::Connection(std::unique_ptr<detail::ConnState> st) noexcept : st_(std::move(st)) {}
Connection::Connection(Connection&& other) noexcept = default;
Connection& Connection::operator=(Connection&& other) noexcept = default;
Connection::~Connection() = default;

detail::ConnState& Connection::state(const char* op) const {
  if (!st_ || !st_->open())
    throw OSError(std::string("concur: Connection.") + op + ": the connection is closed", EBADF);
  return *st_;
}

void Connection::send_bytes(std::span<const std::byte> bytes) {
  detail::conn_send(state("send_bytes"), bytes);
}
void Connection::send_bytes(std::string_view text) {
  send_bytes(std::as_bytes(std::span<const char>(text.data(), text.size())));
}
std::vector<std::byte> Connection::recv_bytes(std::size_t maxlength) {
  auto s = detail::conn_recv(state("recv_bytes"), maxlength);
  return {s.begin(), s.end()};
}
bool Connection::poll() { return detail::conn_poll(state("poll"), detail::Deadline(detail::kPoll)); }
void Connection::close() noexcept { st_.reset(); }
bool Connection::closed() const noexcept { return !st_ || !st_->open(); }
bool Connection::readable() const noexcept { return st_ && st_->rfd; }
bool Connection::writable() const noexcept { return st_ && st_->wfd; }
int Connection::fileno() const {
  const detail::ConnState& st = state("fileno");
  return st.rfd ? st.rfd.get() : st.wfd.get();
}
void Connection::set_spin(std::chrono::nanoseconds spin) { state("set_spin").spin_ns = spin.count(); }

std::pair<Connection, Connection> Pipe(bool duplex) {
  auto make_pipe = [] {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) detail::throw_os_error("pipe2", errno);
    return std::pair<detail::UniqueFd, detail::UniqueFd>(detail::UniqueFd(p[0]), detail::UniqueFd(p[1]));
  };
  auto a = std::make_unique<detail::ConnState>();
  auto b = std::make_unique<detail::ConnState>();
  auto [to_a_read, to_a_write] = make_pipe();
  a->rfd = std::move(to_a_read);
  b->wfd = std::move(to_a_write);
  if (duplex) {
    auto [to_b_read, to_b_write] = make_pipe();
    b->rfd = std::move(to_b_read);
    a->wfd = std::move(to_b_write);
  }
  detail::SegmentPtr seg = detail::Segment::create(sizeof(detail::PipeCounters), "concur-pipe");
  auto* counters = new (seg->base()) detail::PipeCounters;
  counters->cpu_of[0].store(-1);
  counters->cpu_of[1].store(-1);
  detail::attach_counters(*a, seg, 0);
  detail::attach_counters(*b, std::move(seg), 1);
  return {Connection(std::move(a)), Connection(std::move(b))};
}

}  // namespace concur
