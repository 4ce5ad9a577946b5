// Construction, export and attachment of the primitives in concur/synchronize.hpp.
#include "concur/synchronize.hpp"

#include <limits>
#include <stdexcept>
#include <string>

namespace concur {
namespace detail {

namespace {

// A new segment holding one object of type S; returns the segment, offset and state.
template <class S>
std::tuple<SegmentPtr, std::size_t, S*> make_object(IpcKind kind, const char* label) {
  ObjectLayout at = layout_object(0, sizeof(S), alignof(S));
  SegmentPtr seg = Segment::create(at.end, label);
  auto* st = static_cast<S*>(init_object(*seg, at, kind));
  return {std::move(seg), at.header, st};
}

}  // namespace

LockBase LockBase::make(IpcKind kind) {
  auto [seg, offset, st] =
      make_object<MutexState>(kind, kind == IpcKind::lock ? "concur-lock" : "concur-rlock");
  mutex_init(*st, kind == IpcKind::rlock);
  return LockBase(kind, std::move(seg), offset, st);
}

LockBase LockBase::attach_as(const ShmHandle& handle, IpcKind kind) {
  auto objs = attach_handle(handle, {kind}, sizeof(MutexState));
  return LockBase(kind, objs[0].seg, objs[0].offset, static_cast<MutexState*>(objs[0].state));
}

}  // namespace detail

// ---------------------------------------------------------------- Semaphore

Semaphore::Semaphore(std::int64_t value) : Semaphore(value, false) {}

Semaphore::Semaphore(std::int64_t value, bool bounded) {
  if (value < 0 || value > detail::kSemaphoreMax)
    throw std::invalid_argument("Semaphore: initial value must be >= 0 and <= " +
                                std::to_string(detail::kSemaphoreMax) + ", got " +
                                std::to_string(value));
  kind_ = bounded ? detail::IpcKind::bounded_semaphore : detail::IpcKind::semaphore;
  auto [seg, offset, st] = detail::make_object<detail::SemaphoreState>(
      kind_, bounded ? "concur-boundedsemaphore" : "concur-semaphore");
  auto v = static_cast<std::uint32_t>(value);
  detail::semaphore_init(*st, v, bounded);
  seg_ = std::move(seg);
  offset_ = offset;
  st_ = st;
}

Semaphore::Semaphore(const detail::ShmHandle& handle, bool bounded_only) {
  auto objs =
      bounded_only
          ? detail::attach_handle(handle, {detail::IpcKind::bounded_semaphore},
                                  sizeof(detail::SemaphoreState))
          : detail::attach_handle(
                handle, {detail::IpcKind::semaphore, detail::IpcKind::bounded_semaphore},
                sizeof(detail::SemaphoreState));
  kind_ = objs[0].header->kind;
  seg_ = objs[0].seg;
  offset_ = objs[0].offset;
  st_ = static_cast<detail::SemaphoreState*>(objs[0].state);
}

Semaphore Semaphore::attach(const detail::ShmHandle& handle) { return Semaphore(handle, false); }

// ---------------------------------------------------------------- Event

Event::Event() {
  auto [seg, offset, st] =
      detail::make_object<detail::EventState>(detail::IpcKind::event, "concur-event");
  detail::event_init(*st);
  seg_ = std::move(seg);
  offset_ = offset;
  st_ = st;
}

Event::Event(const detail::ShmHandle& handle) {
  auto objs = detail::attach_handle(handle, {detail::IpcKind::event}, sizeof(detail::EventState));
  seg_ = objs[0].seg;
  offset_ = objs[0].offset;
  st_ = static_cast<detail::EventState*>(objs[0].state);
}

Event Event::attach(const detail::ShmHandle& handle) { return Event(handle); }

// ---------------------------------------------------------------- Condition

Condition Condition::make(detail::LockBase lock) {
  auto [seg, offset, st] =
      detail::make_object<detail::CondState>(detail::IpcKind::condition, "concur-condition");
  detail::cond_init(*st);
  return Condition(std::move(lock), std::move(seg), offset, st);
}

Condition::Condition() : Condition(make(RLock())) {}
Condition::Condition(const Lock& lock) : Condition(make(lock)) {}
Condition::Condition(const RLock& lock) : Condition(make(lock)) {}

bool Condition::wait() { return wait_until_deadline(detail::Deadline()); }

bool Condition::wait_until_deadline(const detail::Deadline& deadline) {
  if (!lock_.is_owned())
    throw LockOwnershipError("Condition.wait(): cannot wait on un-acquired lock");
  switch (detail::cond_wait(*st_, *lock_.st_, deadline)) {
    case detail::CondWait::notified: return true;
    case detail::CondWait::timeout: return false;
    case detail::CondWait::abandoned:
      throw AbandonedLockError(
          "Condition.wait(): the lock's previous holder died while holding it; the data it "
          "protects may be inconsistent. The lock is consistent again and is held by the "
          "caller.");
  }
  return false;
}

void Condition::notify(std::size_t n) {
  if (!lock_.is_owned())
    throw LockOwnershipError("Condition.notify(): cannot notify on un-acquired lock");
  detail::cond_notify(*st_, n);
}

void Condition::notify_all() { notify(std::numeric_limits<std::size_t>::max()); }

detail::ShmHandle Condition::handle() const {
  detail::ShmHandle h;
  h.parts.push_back(seg_->part(detail::IpcKind::condition, offset_));
  h.parts.push_back(lock_.seg_->part(lock_.kind_, lock_.offset_));
  return h;
}

Condition Condition::attach(const detail::ShmHandle& handle) {
  auto objs = detail::attach_handle(handle, {detail::IpcKind::condition},
                                    sizeof(detail::CondState));
  if (objs.size() != 2) throw std::invalid_argument("Condition::attach: the handle has no lock");
  detail::expect_kind(objs[1], {detail::IpcKind::lock, detail::IpcKind::rlock});
  detail::LockBase lock(objs[1].header->kind, objs[1].seg, objs[1].offset,
                        static_cast<detail::MutexState*>(objs[1].state));
  return Condition(std::move(lock), objs[0].seg, objs[0].offset,
                   static_cast<detail::CondState*>(objs[0].state));
}

// ---------------------------------------------------------------- Barrier

Barrier::Barrier(std::size_t parties, std::function<void()> action)
    : Barrier(parties, std::move(action), std::int64_t{-1}) {}

Barrier::Barrier(std::size_t parties, std::function<void()> action, std::int64_t timeout_ns)
    : action_(std::move(action)) {
  if (parties == 0 || parties > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("Barrier: parties must be > 0");
  const auto n = static_cast<std::uint32_t>(parties);
  detail::ObjectLayout at =
      detail::layout_object(0, detail::barrier_state_size(n), alignof(detail::BarrierState));
  seg_ = detail::Segment::create(at.end, "concur-barrier");
  st_ = static_cast<detail::BarrierState*>(
      detail::init_object(*seg_, at, detail::IpcKind::barrier));
  offset_ = at.header;
  detail::barrier_init(*st_, n, timeout_ns);
}

Barrier::Barrier(const detail::ShmHandle& handle, std::function<void()> action)
    : action_(std::move(action)) {
  auto objs =
      detail::attach_handle(handle, {detail::IpcKind::barrier}, sizeof(detail::BarrierState));
  seg_ = objs[0].seg;
  offset_ = objs[0].offset;
  st_ = static_cast<detail::BarrierState*>(objs[0].state);
  if (objs[0].header->state_size < detail::barrier_state_size(st_->parties))
    throw std::invalid_argument("Barrier::attach: shared state too small for its parties");
}

Barrier Barrier::attach(const detail::ShmHandle& handle, std::function<void()> action) {
  return Barrier(handle, std::move(action));
}

std::size_t Barrier::wait() {
  detail::Deadline deadline;
  if (st_->timeout_ns >= 0) deadline = detail::deadline_in(std::chrono::nanoseconds(st_->timeout_ns));
  return detail::barrier_wait(*st_, deadline, action_);
}

}  // namespace concur
