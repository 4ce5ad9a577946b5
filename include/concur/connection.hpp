// concur/connection.hpp: Python's multiprocessing.Pipe and Connection.
//
// What it offers and guarantees:
// - Pipe(duplex = true) returns two connected Connections. Duplex: both ends send and
//   receive. Not duplex (Python's Pipe(False)): the first end only receives, the second
//   only sends.
// - send(obj) / recv<T>() carry any serializable value (concur/serialize.hpp);
//   send_bytes / recv_bytes carry raw bytes; both use the same framing, so recv_bytes
//   returns what send encoded and recv<T> decodes what send_bytes sent. Messages arrive
//   whole and in order.
// - recv on a connection whose other end is closed, or whose other process died, throws
//   concur::EOFError; it never hangs. Every copy of the other end counts: the other end
//   is closed when no process holds it any more. So give a Connection to a Process by
//   value with std::move (Process p(f, std::move(child_end))): the parent then holds no
//   copy, and recv in the parent sees EOFError when the child exits. (Python leaves the
//   parent's copy open, and its recv then hangs until the parent closes it.)
// - send to a closed peer throws concur::BrokenPipeError (an OSError). It never raises
//   SIGPIPE: the signal is blocked in the sending thread during the write and consumed.
// - Bad input, and what survives it: a message longer than recv_bytes' maxlength is read
//   and discarded, then SerializationError is thrown, and the connection stays usable
//   (Python leaves it unusable). A payload that does not decode as T throws
//   SerializationError; the message is consumed and the connection stays usable. A frame
//   header that fails its check means the byte stream itself is corrupt: that recv and
//   every later one throw SerializationError, since no message boundary can be trusted.
// - poll() / poll(timeout): whether recv would return without waiting (also true at EOF,
//   so that recv then raises, as in Python).
// - Speed: two kernel pipes (one per direction) and a shared page of counters; a message
//   is one writev, and usually one read, which reads ahead. A waiting recv or poll spins
//   briefly on the shared counter (20 µs by default, set_spin) before it sleeps in the
//   read, because a sleeping hand-off costs ~25 µs here and a spinning one ~1 µs; it does
//   not spin when the other end last ran on its own CPU, where spinning only delays the
//   answer. An idle Connection uses no CPU.
// - A Connection is move-only (it owns its descriptors). It can be passed to a
//   concur::Process as an argument under every start method (not with unread data in its
//   read-ahead buffer); it cannot travel inside a Queue or another message. Not
//   thread-safe: one thread sending and one receiving at a time, as in Python.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "concur/detail/futex.hpp"
#include "concur/detail/mp_queue.hpp"
#include "concur/detail/process_handoff.hpp"
#include "concur/errors.hpp"
#include "concur/serialize.hpp"

namespace concur {

class Connection;

namespace detail {

struct ConnState;
struct ConnAccess;

// Out-of-line halves of Connection (src/mp/connection.cpp).
void conn_send(ConnState& st, std::span<const std::byte> payload);
// The next message's payload, valid until the next receive on `st`. maxlength: see
// recv_bytes. Throws EOFError, SerializationError, OSError.
std::span<const std::byte> conn_recv(ConnState& st, std::size_t maxlength);
bool conn_poll(ConnState& st, const Deadline& deadline);

}  // namespace detail

// One end of a Pipe.
class Connection {
 public:
  // No limit for recv_bytes.
  static constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

  // A closed connection (what a moved-from one is too).
  Connection() noexcept;
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  // Closes it.
  ~Connection();

  // Sends one value; BrokenPipeError when the other end is closed.
  template <class T>
  void send(const T& obj) {
    detail::ScratchWriter w;
    detail::encode(w.get(), obj);
    detail::conn_send(state("send"), w.get().bytes());
  }
  // Receives one value of type T, waiting as long as needed; EOFError at end of stream.
  template <class T>
  T recv() {
    return detail::loads<T>(detail::conn_recv(state("recv"), kNoLimit));
  }

  // Sends raw bytes as one message.
  void send_bytes(std::span<const std::byte> bytes);
  // Sends a string's bytes as one message.
  void send_bytes(std::string_view text);
  // Receives one message as bytes. A longer message than `maxlength` is discarded and
  // SerializationError thrown (the connection stays usable).
  std::vector<std::byte> recv_bytes(std::size_t maxlength = kNoLimit);

  // Whether a message (or EOF) is ready now.
  bool poll();
  // Waits at most `timeout` for a message (or EOF); true when one is ready.
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return detail::conn_poll(state("poll"), detail::deadline_in(timeout));
  }

  // Closes this end (idempotent). The other end sees EOF once no copy of this one is open.
  void close() noexcept;
  // Whether close() was called (or this Connection was moved from).
  bool closed() const noexcept;
  // Whether this end may receive / send.
  bool readable() const noexcept;
  bool writable() const noexcept;
  // The descriptor to wait on with poll/select/epoll: the read end of the incoming pipe
  // (readable when a message or EOF is pending, unless a message is already buffered:
  // check poll() first), or the write end for a send-only end. OSError when closed.
  int fileno() const;
  // How long a waiting recv/poll spins before it sleeps (this end only).
  void set_spin(std::chrono::nanoseconds spin);

 private:
  explicit Connection(std::unique_ptr<detail::ConnState> st) noexcept;
  detail::ConnState& state(const char* op) const;

  std::unique_ptr<detail::ConnState> st_;

  friend struct detail::ConnAccess;
  friend std::pair<Connection, Connection> Pipe(bool duplex);
};

// Two connected Connections: (a, b). Duplex: both ways. Otherwise a only receives and b
// only sends (Python's Pipe(duplex=False)). Throws OSError.
std::pair<Connection, Connection> Pipe(bool duplex = true);

namespace detail {

// How a Connection crosses into a Process (see concur/detail/process_handoff.hpp).
struct ConnAccess {
  static void encode(Writer& w, const Connection& c);
  static Connection decode(Reader& r);
};

template <>
struct family_codec<Connection> {
  using T = Connection;
  static constexpr bool is_family = true, enc = true, dec = true, is_cereal = false;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = Connection;
  static void encode(Writer& w, const Connection& c) { ConnAccess::encode(w, c); }
  static Connection decode(Reader& r) { return ConnAccess::decode(r); }
};

// Inside a cereal archive (a ProcessSubclass's serialize()), the same codec.
inline void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const Connection& c) {
  ConnAccess::encode(ar.writer(), c);
}
inline void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, Connection& c) {
  c = ConnAccess::decode(ar.reader());
}

}  // namespace detail

}  // namespace concur
