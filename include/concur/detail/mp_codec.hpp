// How the process-shared objects of synchronize.hpp and shared_memory.hpp travel as
// values: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier, Value<T>,
// Array<T> and SharedMemory become serializable, so that they can be arguments of a
// concur::Process (and of process pool tasks, or even queue items).
//
// The objects themselves stay where they are; what travels is their handle()
// (detail/ipc_segment.hpp) with each segment's descriptor exported through
// detail/process_handoff.hpp, and the receiver attach()es. Inside a Process's arguments
// the descriptors go with the hand-shake, so the child attaches even if the parent has
// exited meanwhile. Anywhere else the receiver reopens /proc/<sender>/fd/<fd>, which
// needs the sender alive and still holding the object. A Barrier's action is per
// process and does not travel (the receiver's copy has none). SharedMemory travels by
// name: the receiver attaches by name, so it must not be unlinked before then.
//
// Included by concur/process.hpp; include it (or process.hpp) wherever such an object is
// serialized.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "concur/detail/process_handoff.hpp"
#include "concur/serialize.hpp"
#include "concur/shared_memory.hpp"
#include "concur/synchronize.hpp"

namespace concur::detail {

// One part of a ShmHandle on the wire.
struct ShmWirePart {
  IpcKind kind{};
  std::uint32_t reserved = 0;
  std::uint64_t offset = 0;
  handoff::FdRef fd{};
};

inline void encode_shm_handle(Writer& w, const ShmHandle& h) {
  std::vector<ShmWirePart> parts;
  parts.reserve(h.parts.size());
  for (const ShmPart& p : h.parts) {
    ShmWirePart wp;
    wp.kind = p.kind;
    wp.offset = p.offset;
    wp.fd = handoff::export_fd(p.fd, /*must_pass=*/false);
    parts.push_back(wp);
  }
  encode(w, parts);
}

inline ShmHandle decode_shm_handle(Reader& r) {
  auto parts = decode<std::vector<ShmWirePart>>(r);
  if (parts.empty() || parts.size() > 8)
    throw SerializationError("concur: malformed handle of a shared object");
  ShmHandle h;
  for (const ShmWirePart& wp : parts) {
    ShmPart p;
    p.kind = wp.kind;
    p.offset = wp.offset;
    p.dev = wp.fd.dev;
    p.ino = wp.fd.ino;
    int received = handoff::importer() ? handoff::importer()->peek(wp.fd) : -1;
    if (received >= 0) {
      p.fd = received;
      p.pid = ::getpid();
    } else {
      p.fd = wp.fd.fd;
      p.pid = wp.fd.pid;
    }
    h.parts.push_back(p);
  }
  return h;
}

// A codec over handle()/attach().
template <class T, T (*Attach)(const ShmHandle&)>
struct shm_object_codec {
  static constexpr bool is_family = true, enc = true, dec = true, is_cereal = false;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = T;
  static void encode(Writer& w, const T& v) { encode_shm_handle(w, v.handle()); }
  static T decode(Reader& r) { return Attach(decode_shm_handle(r)); }
};

template <class T>
T attach_plain(const ShmHandle& h) {
  return T::attach(h);
}
inline Barrier attach_barrier(const ShmHandle& h) { return Barrier::attach(h); }

template <>
struct family_codec<Lock> : shm_object_codec<Lock, &attach_plain<Lock>> {};
template <>
struct family_codec<RLock> : shm_object_codec<RLock, &attach_plain<RLock>> {};
template <>
struct family_codec<Semaphore> : shm_object_codec<Semaphore, &attach_plain<Semaphore>> {};
template <>
struct family_codec<BoundedSemaphore>
    : shm_object_codec<BoundedSemaphore, &attach_plain<BoundedSemaphore>> {};
template <>
struct family_codec<Event> : shm_object_codec<Event, &attach_plain<Event>> {};
template <>
struct family_codec<Condition> : shm_object_codec<Condition, &attach_plain<Condition>> {};
template <>
struct family_codec<Barrier> : shm_object_codec<Barrier, &attach_barrier> {};
template <class E>
struct family_codec<Value<E>> : shm_object_codec<Value<E>, &attach_plain<Value<E>>> {};
template <class E>
struct family_codec<Array<E>> : shm_object_codec<Array<E>, &attach_plain<Array<E>>> {};

template <>
struct family_codec<SharedMemory> {
  static constexpr bool is_family = true, enc = true, dec = true, is_cereal = false;
  static constexpr std::size_t min_size = 8, fixed = npos;
  using enc_culprit = void;
  using dec_culprit = void;
  using decoded = SharedMemory;
  static void encode(Writer& w, const SharedMemory& m) {
    if (m.name().empty() || !m.data())
      throw SerializationError("concur: a closed SharedMemory cannot be sent");
    concur::detail::encode(w, m.name());
  }
  static SharedMemory decode(Reader& r) {
    return SharedMemory(concur::detail::decode<std::string>(r));
  }
};

// Inside a cereal archive (a ProcessSubclass's serialize()), the same codecs.
template <class T>
concept mp_shared_object =
    std::is_same_v<T, Lock> || std::is_same_v<T, RLock> || std::is_same_v<T, Semaphore> ||
    std::is_same_v<T, BoundedSemaphore> || std::is_same_v<T, Event> ||
    std::is_same_v<T, Condition> || std::is_same_v<T, Barrier> || std::is_same_v<T, SharedMemory>;
template <class T>
  requires mp_shared_object<T>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const T& v) {
  codec<T>::encode(ar.writer(), v);
}
template <class T>
  requires mp_shared_object<T>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, T& v) {
  v = codec<T>::decode(ar.reader());
}
template <template <class> class V, class E>
  requires(std::is_same_v<V<E>, Value<E>> || std::is_same_v<V<E>, Array<E>>)
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const V<E>& v) {
  codec<V<E>>::encode(ar.writer(), v);
}
template <template <class> class V, class E>
  requires(std::is_same_v<V<E>, Value<E>> || std::is_same_v<V<E>, Array<E>>)
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, V<E>& v) {
  v = codec<V<E>>::decode(ar.reader());
}

}  // namespace concur::detail
