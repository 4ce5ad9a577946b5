// Tests of concur/connection.hpp: Pipe and Connection in one process and between
// processes, EOF in every form, bad input, and what survives it.
#include "concur/connection.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "concur/process.hpp"

namespace {

using namespace std::chrono_literals;
using concur::Connection;
using concur::Pipe;
using concur::Process;
using concur::StartMethod;

const StartMethod kMethods[] = {StartMethod::forkserver, StartMethod::spawn, StartMethod::fork};
std::string method_name(const testing::TestParamInfo<StartMethod>& p) {
  return concur::to_string(p.param);
}

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span<const char>(s.data(), s.size()));
  return {b.begin(), b.end()};
}

// ---------------------------------------------------------------- one process
TEST(Connection, SendsValuesBothWays) {
  auto [a, b] = Pipe();
  a.send(42);
  a.send(std::string("text"));
  a.send(std::map<std::string, std::vector<int>>{{"k", {1, 2}}});
  EXPECT_EQ(b.recv<int>(), 42);
  EXPECT_EQ(b.recv<std::string>(), "text");
  EXPECT_EQ((b.recv<std::map<std::string, std::vector<int>>>()),
            (std::map<std::string, std::vector<int>>{{"k", {1, 2}}}));
  b.send(std::vector<double>{0.5});
  EXPECT_EQ(a.recv<std::vector<double>>(), std::vector<double>{0.5});
  EXPECT_TRUE(a.readable());
  EXPECT_TRUE(a.writable());
}

TEST(Connection, BytesAndValuesShareTheFraming) {
  auto [a, b] = Pipe();
  a.send_bytes("raw");
  a.send(std::string("value"));
  a.send_bytes(concur::detail::dumps(std::string("made by hand")));
  a.send_bytes(std::span<const std::byte>());
  EXPECT_EQ(b.recv_bytes(), bytes_of("raw"));
  EXPECT_EQ(b.recv_bytes(), concur::detail::dumps(std::string("value")));
  EXPECT_EQ(b.recv<std::string>(), "made by hand");
  EXPECT_TRUE(b.recv_bytes().empty());
}

TEST(Connection, PollSaysWhetherAMessageIsReady) {
  auto [a, b] = Pipe();
  EXPECT_FALSE(b.poll());
  EXPECT_FALSE(b.poll(10ms));
  a.send(1);
  EXPECT_TRUE(b.poll(60s));
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv<int>(), 1);
  EXPECT_FALSE(b.poll());
}

TEST(Connection, PollWithTimeoutWakesWhenAMessageArrives) {
  auto [a, b] = Pipe();
  b.set_spin(std::chrono::nanoseconds(0));  // straight to the sleep in poll(2)
  std::thread sender([&a = a] { a.send(7); });
  EXPECT_TRUE(b.poll(60s));
  EXPECT_EQ(b.recv<int>(), 7);
  sender.join();
}

TEST(Connection, WaitingRecvSeesEofWhenThePeerCloses) {
  auto [a, b] = Pipe();
  bool eof = false;
  std::thread receiver([&b = b, &eof] {
    try {
      b.recv<int>();
    } catch (const concur::EOFError&) {
      eof = true;
    }
  });
  a.close();
  receiver.join();
  EXPECT_TRUE(eof);
}

TEST(Connection, ReadsAheadWithoutLosingMessages) {
  auto [a, b] = Pipe();
  // Many small messages in flight (a thread: a socket holds only so many of them).
  std::thread sender([&a = a] {
    for (int i = 0; i < 10000; ++i) a.send(i);
  });
  for (int i = 0; i < 10000; ++i) EXPECT_EQ(b.recv<int>(), i);
  sender.join();
  EXPECT_FALSE(b.poll());
}

TEST(Connection, LargeMessagesWhileTheOtherSideReads) {
  auto [a, b] = Pipe();
  std::vector<std::uint32_t> big(std::size_t{3} << 20);  // 12 MiB, far past the socket buffer
  std::iota(big.begin(), big.end(), 0u);
  std::thread sender([&a = a, &big] {
    a.send(big);
    a.send(std::string("after"));
  });
  EXPECT_EQ(b.recv<std::vector<std::uint32_t>>(), big);
  EXPECT_EQ(b.recv<std::string>(), "after");
  sender.join();
}

TEST(Connection, EofWhenThePeerIsClosed) {
  auto [a, b] = Pipe();
  a.send(1);
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_EQ(b.recv<int>(), 1);  // what was sent before the close still arrives
  EXPECT_TRUE(b.poll());        // EOF is "ready": recv raises at once
  EXPECT_THROW(b.recv<int>(), concur::EOFError);
  EXPECT_THROW(b.recv_bytes(), concur::EOFError);
  EXPECT_THROW(b.send(2), concur::BrokenPipeError);
}

TEST(Connection, BrokenPipeRaisesNoSignalAndLeavesTheMaskAlone) {
  auto [a, b] = Pipe();
  b.close();
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  ASSERT_FALSE(sigismember(&before, SIGPIPE));
  EXPECT_THROW(a.send(1), concur::BrokenPipeError);  // SIGPIPE's default would kill us
  sigset_t after, pending;
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&after, SIGPIPE));
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
}

TEST(Connection, EofInTheMiddleOfAMessage) {
  // A real frame, captured raw from another pipe; then only its first 40 bytes are written
  // before the writer goes away.
  auto whole = concur::detail::dumps(std::string(100, 'x'));
  auto [r1, w1] = Pipe(false);
  w1.send_bytes(whole);
  std::vector<std::byte> frame(16 + whole.size());
  ASSERT_EQ(::read(r1.fileno(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  auto [r, w] = Pipe(false);
  ASSERT_EQ(::write(w.fileno(), frame.data(), 40), 40);
  w.close();
  EXPECT_THROW(r.recv<std::string>(), concur::EOFError);
}

TEST(Connection, OverlongMessageIsDiscardedAndTheConnectionGoesOn) {
  auto [a, b] = Pipe();
  a.send_bytes(std::string(1000, 'z'));
  a.send_bytes("short");
  EXPECT_THROW(b.recv_bytes(100), concur::SerializationError);
  EXPECT_EQ(b.recv_bytes(100), bytes_of("short"));
}

TEST(Connection, OverlongMessageLargerThanTheReadAheadIsDiscardedToo) {
  auto [a, b] = Pipe();
  std::thread sender([&a = a] {
    a.send_bytes(std::string(std::size_t{1} << 20, 'z'));
    a.send(7);
  });
  EXPECT_THROW(b.recv_bytes(1000), concur::SerializationError);
  EXPECT_EQ(b.recv<int>(), 7);
  sender.join();
}

TEST(Connection, UndecodableMessageThrowsAndTheConnectionGoesOn) {
  auto [a, b] = Pipe();
  a.send_bytes("xyz");  // not a std::string's encoding (too short for its length)
  a.send(std::string("fine"));
  EXPECT_THROW(b.recv<std::string>(), concur::SerializationError);
  EXPECT_EQ(b.recv<std::string>(), "fine");
}

TEST(Connection, CorruptStreamIsReportedAndStaysReported) {
  auto [r, w] = Pipe(false);
  const char junk[32] = "this is not a concur frame!!!!!";
  ASSERT_EQ(::write(w.fileno(), junk, sizeof junk), 32);
  w.send(1);
  EXPECT_THROW(r.recv<int>(), concur::SerializationError);
  EXPECT_THROW(r.recv<int>(), concur::SerializationError);
  EXPECT_TRUE(r.poll());
}

// Random streams of frames with one fault each (a flipped bit, a cut, junk inserted),
// written raw into a pipe: whatever comes before the fault arrives intact, a fault in a
// header is reported (and stays reported) instead of being read as a length, a fault in a
// payload reaches only that message, messages over maxlength are refused without losing
// the next, and nothing else can happen: no other exception, no crash, no hang.
TEST(Connection, RandomFaultsInTheStreamLoseNothingBeforeThem) {
  std::mt19937_64 rng(20261124);
  for (int round = 0; round < 300; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // The frames, as a real sender writes them, captured raw.
    std::vector<std::vector<std::byte>> payloads;
    std::vector<std::byte> stream;
    std::vector<std::size_t> starts;  // offset of each frame in `stream`
    {
      auto [r, w] = Pipe(false);
      const int frames = 1 + static_cast<int>(rng() % 12);
      for (int i = 0; i < frames; ++i) {
        std::vector<std::byte> p(rng() % 3000);
        for (auto& b : p) b = static_cast<std::byte>(rng());
        w.send_bytes(p);
        std::vector<std::byte> raw(16 + p.size());
        ASSERT_EQ(::read(r.fileno(), raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
        starts.push_back(stream.size());
        stream.insert(stream.end(), raw.begin(), raw.end());
        payloads.push_back(std::move(p));
      }
    }
    const std::size_t at = rng() % stream.size();
    const int fault = static_cast<int>(rng() % 3);
    if (fault == 0) stream[at] ^= static_cast<std::byte>(1u << (rng() % 8));
    if (fault == 1) stream.resize(at);
    if (fault == 2)
      stream.insert(stream.begin() + static_cast<std::ptrdiff_t>(at), 5, std::byte{0x41});
    const std::size_t maxlength = 1000 + rng() % 3000;

    auto [r, w] = Pipe(false);
    ASSERT_EQ(::write(w.fileno(), stream.data(), stream.size()),
              static_cast<ssize_t>(stream.size()));
    w.close();
    for (std::size_t i = 0;; ++i) {
      const bool before_fault = i < payloads.size() && starts[i] + 16 + payloads[i].size() <= at;
      const bool header_hit = i < payloads.size() && at >= starts[i] && at < starts[i] + 16;
      std::vector<std::byte> got;
      try {
        got = r.recv_bytes(maxlength);
      } catch (const concur::EOFError&) {
        EXPECT_FALSE(before_fault) << "frame " << i << " lost";
        break;
      } catch (const concur::SerializationError& e) {
        const bool too_long = i < payloads.size() && payloads[i].size() > maxlength;
        if (before_fault) {
          EXPECT_TRUE(too_long) << "frame " << i << ": " << e.what();
          continue;
        }
        if (too_long && !header_hit) continue;  // refused by its intact header
        // A broken boundary: reported, and reported again.
        EXPECT_THROW(r.recv_bytes(maxlength), concur::SerializationError);
        break;
      }
      ASSERT_LT(i, payloads.size()) << "more messages than were sent";
      ASSERT_FALSE(header_hit) << "frame " << i << ": a damaged header was read as a length";
      if (before_fault) {
        EXPECT_EQ(got, payloads[i]) << "frame " << i;
      } else if (fault == 0 && i < payloads.size() && !header_hit) {
        // A bit flipped in this payload: only this message differs, by that bit.
        ASSERT_EQ(got.size(), payloads[i].size());
        std::size_t diff = 0;
        for (std::size_t k = 0; k < got.size(); ++k) diff += got[k] != payloads[i][k];
        EXPECT_LE(diff, 1u);
      }
    }
  }
}

TEST(Connection, OneWayPipe) {
  auto [r, w] = Pipe(false);
  EXPECT_TRUE(r.readable());
  EXPECT_FALSE(r.writable());
  EXPECT_FALSE(w.readable());
  EXPECT_TRUE(w.writable());
  w.send(5);
  EXPECT_EQ(r.recv<int>(), 5);
  EXPECT_THROW(r.send(1), concur::OSError);
  EXPECT_THROW(w.recv<int>(), concur::OSError);
  EXPECT_THROW(w.poll(), concur::OSError);
  w.close();
  EXPECT_THROW(r.recv<int>(), concur::EOFError);
}

TEST(Connection, ClosedConnectionThrowsOSError) {
  Connection c;
  EXPECT_TRUE(c.closed());
  EXPECT_THROW(c.fileno(), concur::OSError);
  EXPECT_THROW(c.send(1), concur::OSError);
  EXPECT_THROW(c.recv<int>(), concur::OSError);
  auto [a, b] = Pipe();
  Connection moved = std::move(a);
  EXPECT_TRUE(a.closed());
  EXPECT_FALSE(moved.closed());
  EXPECT_GE(moved.fileno(), 0);
  moved.close();
  moved.close();  // idempotent
}

TEST(Connection, CannotTravelInsideAQueueOrMessage) {
  auto [a, b] = Pipe();
  concur::Queue<Connection> q;
  EXPECT_THROW(q.put(a), concur::SerializationError);
  EXPECT_THROW(b.send(a), concur::SerializationError);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(b.poll());
}

// ---------------------------------------------------------------- between processes
void doubler(Connection conn) {
  for (;;) {
    auto x = conn.recv<std::optional<int>>();
    if (!x) return;
    conn.send(*x * 2);
  }
}

class ConnectionAcrossProcesses : public testing::TestWithParam<StartMethod> {};

TEST_P(ConnectionAcrossProcesses, EchoServer) {
  auto [parent, child] = Pipe();
  Process p({.start_method = GetParam()}, doubler, std::move(child));
  p.start();
  for (int v : {3, 4, 5}) {
    parent.send(std::optional<int>(v));
    EXPECT_EQ(parent.recv<int>(), 2 * v);
  }
  parent.send(std::optional<int>());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_THROW(parent.recv<int>(), concur::EOFError);
}

void send_then_exit(Connection conn, int code) {
  conn.send(std::string("last words"));
  ::_exit(code);
}

TEST_P(ConnectionAcrossProcesses, EofWhenThePeerProcessExits) {
  auto [parent, child] = Pipe();
  Process p({.start_method = GetParam()}, send_then_exit, std::move(child), 3);
  p.start();
  EXPECT_EQ(parent.recv<std::string>(), "last words");
  EXPECT_THROW(parent.recv<std::string>(), concur::EOFError);  // without join first
  p.join();
  EXPECT_EQ(p.exitcode(), 3);
}

void block_on_recv(Connection conn) { conn.recv<int>(); }

TEST_P(ConnectionAcrossProcesses, EofWhenThePeerProcessIsKilled) {
  auto [parent, child] = Pipe();
  Process p({.start_method = GetParam()}, block_on_recv, std::move(child));
  p.start();
  p.kill();
  EXPECT_THROW(parent.recv<int>(), concur::EOFError);
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

void read_until_eof(Connection conn, concur::Queue<int> count) {
  int n = 0;
  try {
    for (;;) {
      conn.recv<int>();
      ++n;
    }
  } catch (const concur::EOFError&) {
    count.put(n);
  }
}

TEST_P(ConnectionAcrossProcesses, ChildSeesEofWhenTheParentCloses) {
  auto [parent, child] = Pipe();
  concur::Queue<int> count;
  Process p({.start_method = GetParam()}, read_until_eof, std::move(child), count);
  p.start();
  for (int i = 0; i < 10; ++i) parent.send(i);
  parent.close();
  EXPECT_EQ(count.get(), 10);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

void say_hello(Connection conn) { conn.send(std::string("hello")); }

TEST_P(ConnectionAcrossProcesses, AnEndKeptByTheParentIsTheParentsToClose) {
  auto [parent, child] = Pipe();
  Process p({.start_method = GetParam()}, say_hello, child);  // a copy travels
  EXPECT_FALSE(child.closed());
  p.start();
  EXPECT_EQ(parent.recv<std::string>(), "hello");
  p.join();
  // The child has exited, but our copy of its end keeps the socket open: no EOF yet
  // (Python behaves the same). Closing our copy makes it visible.
  EXPECT_FALSE(parent.poll(20ms));
  child.close();
  EXPECT_THROW(parent.recv<std::string>(), concur::EOFError);
}

void talk_to_myself(Connection a, Connection b, concur::Queue<std::string> out) {
  a.send(std::string("to b"));
  b.send(std::string("to a"));
  out.put(b.recv<std::string>() + "," + a.recv<std::string>());
}

TEST_P(ConnectionAcrossProcesses, BothEndsOfOnePipeInOneChild) {
  // The read end of one direction and the write end of the other are one inode each way:
  // they must arrive as the ends they were.
  auto [a, b] = Pipe();
  concur::Queue<std::string> out;
  Process p({.start_method = GetParam()}, talk_to_myself, std::move(a), std::move(b), out);
  p.start();
  EXPECT_EQ(out.get(), "to b,to a");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

void echo_all(std::vector<concur::Value<int>> pad, Connection conn) {
  static_cast<void>(pad);
  conn.send(conn.recv<int>() + 1);
}

TEST_P(ConnectionAcrossProcesses, PassedBeyondTheHandShakesDescriptors) {
  std::vector<concur::Value<int>> pad(20);  // 20 descriptors first: the pipe goes via /proc
  auto [mine, theirs] = Pipe();
  Process p({.start_method = GetParam()}, echo_all, pad, std::move(theirs));
  p.start();
  mine.send(41);
  EXPECT_EQ(mine.recv<int>(), 42);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_THROW(mine.recv<int>(), concur::EOFError);
}

void send_lines(Connection w, int n) {
  for (int i = 0; i < n; ++i) w.send_bytes("line " + std::to_string(i));
}

TEST_P(ConnectionAcrossProcesses, OneWayPipeOfBytesFromAChild) {
  auto [r, w] = Pipe(false);
  Process p({.start_method = GetParam()}, send_lines, std::move(w), 3);
  p.start();
  for (int i = 0; i < 3; ++i) {
    auto bytes = r.recv_bytes();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
              "line " + std::to_string(i));
  }
  EXPECT_THROW(r.recv_bytes(), concur::EOFError);  // the child's end went with it
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ConnectionAcrossProcesses, testing::ValuesIn(kMethods),
                         method_name);

}  // namespace
