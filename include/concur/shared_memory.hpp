// concur/shared_memory.hpp: memory shared between processes without serialization.
//
// - SharedMemory: Python's multiprocessing.shared_memory.SharedMemory, a named POSIX
//   shared-memory block (shm_open, under /dev/shm) that unrelated processes attach to by
//   name. As in Python the creator does not remove the name when it closes: call unlink()
//   once, from one process, when everyone is done. To make leaks hard, create() takes
//   {.unlink_on_destroy = true}, which unlinks when the creating object is destroyed (in
//   the creating process only: a forked child's copy never unlinks).
// - Value<T> / Array<T>: Python's multiprocessing.Value / Array for trivially copyable T,
//   in an anonymous shared segment (inherited across fork, passed to spawned processes
//   through handle()/attach(), see detail/ipc_segment.hpp). By default each carries an
//   RLock (Python's default `lock=True`) and value()/set_value()/get()/set() take it for
//   each access. As in Python, `v.set_value(v.value() + 1)` is NOT atomic: hold
//   get_lock() around a read-modify-write, or use modify(). RawValue/RawArray (or
//   lock = false) have no lock. Copies are handles to the same memory.
//   Array::operator[] and span() give plain references for speed and do not lock: hold
//   get_lock() while other processes may write.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <new>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/ipc_data.hpp"
#include "concur/errors.hpp"
#include "concur/synchronize.hpp"

namespace concur {

// How SharedMemory::create() makes the block (outside the class so `= {}` defaults work).
struct SharedMemoryOptions {
  bool unlink_on_destroy = false;  // unlink when the creating object is destroyed
  mode_t mode = 0600;              // permissions of the new block
};

// A named block of POSIX shared memory (Python's shared_memory.SharedMemory). Move-only:
// it owns this process's mapping; other processes attach their own by name.
class SharedMemory {
 public:
  // Options of create(): {.unlink_on_destroy = true, .mode = 0600}.
  using Options = SharedMemoryOptions;

  // Creates a new block `name` of `size` (> 0) bytes, zero-filled. FileExistsError if the
  // name is taken, std::invalid_argument for size 0 or a malformed name.
  static SharedMemory create(std::string_view name, std::size_t size, Options options = {});
  // Creates a block with a fresh random name ("psm_" + hex, as Python).
  static SharedMemory create(std::size_t size, Options options = {});
  // Attaches to the existing block `name`; FileNotFoundError if there is none.
  explicit SharedMemory(std::string_view name);

  // Takes over the mapping (and the unlink duty); `other` is left closed and nameless.
  SharedMemory(SharedMemory&& other) noexcept;
  // Releases this one (as the destructor does), then takes over `other`.
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  // Closes; unlinks too if created with unlink_on_destroy (in the creating process).
  ~SharedMemory();

  // The name other processes attach with (without the leading '/', as Python).
  const std::string& name() const noexcept { return name_; }
  // Size in bytes (of the block as created).
  std::size_t size() const noexcept { return size_; }
  // The whole block; empty after close().
  std::span<std::byte> buf() const noexcept { return {data_, data_ ? size_ : 0}; }
  // First byte of the block; null after close().
  std::byte* data() const noexcept { return data_; }
  // Unmaps this process's view; the block and its name stay (idempotent).
  void close() noexcept;
  // Removes the name so no one else can attach; mappings stay valid until closed.
  // FileNotFoundError if it was already unlinked.
  void unlink();

 private:
  SharedMemory() = default;
  void release() noexcept;
  std::string name_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  pid_t creator_pid_ = 0;  // non-zero only in the object that created it
  bool unlink_on_destroy_ = false;
};

// multiprocessing.Value: one shared T, guarded by an RLock unless created without one.
template <class T>
class Value {
  static_assert(std::is_trivially_copyable_v<T>,
                "concur::Value<T> needs a trivially copyable T: its bytes are shared "
                "between processes as they are");

 public:
  // A new shared T holding `initial`; `lock` = false makes it raw (Python's RawValue).
  explicit Value(const T& initial = T{}, bool lock = true)
      : obj_(detail::make_data_object(detail::IpcKind::value, sizeof(T), alignof(T), 1,
                                      lock)) {
    ::new (static_cast<void*>(obj_.data)) T(initial);
  }

  // The value (under the lock, if any).
  T value() const {
    auto guard = locked();
    T out;
    std::memcpy(static_cast<void*>(&out), obj_.data, sizeof(T));
    return out;
  }
  // Replaces the value (under the lock, if any).
  void set_value(const T& v) {
    auto guard = locked();
    std::memcpy(obj_.data, static_cast<const void*>(&v), sizeof(T));
  }
  // Runs f(T&) under the lock (if any) and returns its result: an atomic
  // read-modify-write, e.g. v.modify([](int& x) { ++x; }).
  template <class F>
  decltype(auto) modify(F&& f) {
    auto guard = locked();
    return std::forward<F>(f)(*get_obj());
  }
  // The RLock guarding the value; InvalidStateError for a raw value.
  RLock get_lock() const {
    if (!obj_.lock) throw InvalidStateError("Value has no lock (created with lock = false)");
    return RLock(obj_.seg, obj_.lock_offset, obj_.lock);
  }
  // Whether the value has a lock.
  bool has_lock() const noexcept { return obj_.lock != nullptr; }
  // The shared T itself, unguarded (Python's get_obj()).
  T* get_obj() const noexcept { return std::launder(reinterpret_cast<T*>(obj_.data)); }

  // The export hook: see detail/ipc_segment.hpp.
  detail::ShmHandle handle() const {
    return detail::data_object_handle(obj_, detail::IpcKind::value);
  }
  // The Value `handle` names; std::invalid_argument if it holds a different sizeof(T).
  static Value attach(const detail::ShmHandle& handle) {
    return Value(detail::attach_data_object(handle, detail::IpcKind::value, sizeof(T)));
  }

 private:
  explicit Value(detail::DataObject obj) : obj_(std::move(obj)) {}
  detail::MutexGuard locked() const { return detail::MutexGuard(obj_.lock); }
  detail::DataObject obj_;
};

// A Value without a lock (Python's multiprocessing.RawValue).
template <class T>
Value<T> RawValue(const T& initial = T{}) {
  return Value<T>(initial, false);
}

// multiprocessing.Array: a fixed-size shared array of T, guarded by an RLock unless created
// without one.
template <class T>
class Array {
  static_assert(std::is_trivially_copyable_v<T>,
                "concur::Array<T> needs a trivially copyable T: its bytes are shared "
                "between processes as they are");

 public:
  // `size` value-initialised (zero) elements; `lock` = false makes it raw.
  explicit Array(std::size_t size, bool lock = true)
      : obj_(detail::make_data_object(detail::IpcKind::array, sizeof(T), alignof(T), size,
                                      lock)) {
    for (std::size_t i = 0; i < size; ++i) ::new (static_cast<void*>(slot(i))) T();
  }
  // A copy of `init`'s elements.
  Array(std::initializer_list<T> init, bool lock = true)
      : Array(std::span<const T>(init.begin(), init.size()), lock) {}
  // A copy of the elements of a sized range.
  template <std::ranges::sized_range R>
    requires std::is_constructible_v<T, std::ranges::range_reference_t<R>> &&
             (!std::is_same_v<std::remove_cvref_t<R>, Array>)
  explicit Array(R&& init, bool lock = true)
      : obj_(detail::make_data_object(detail::IpcKind::array, sizeof(T), alignof(T),
                                      static_cast<std::size_t>(std::ranges::size(init)),
                                      lock)) {
    std::size_t i = 0;
    for (auto&& x : init) ::new (static_cast<void*>(slot(i++))) T(x);
  }

  // Number of elements.
  std::size_t size() const noexcept { return obj_.count; }
  // Element i, unguarded and unchecked (hold get_lock() if others may write).
  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  // Element i, unguarded; std::out_of_range past the end.
  T& at(std::size_t i) const {
    check(i);
    return data()[i];
  }
  // A copy of element i (under the lock, if any); std::out_of_range past the end.
  T get(std::size_t i) const {
    check(i);
    auto guard = locked();
    T out;
    std::memcpy(static_cast<void*>(&out), slot(i), sizeof(T));
    return out;
  }
  // Stores v at i (under the lock, if any); std::out_of_range past the end.
  void set(std::size_t i, const T& v) {
    check(i);
    auto guard = locked();
    std::memcpy(slot(i), static_cast<const void*>(&v), sizeof(T));
  }
  // A copy of all elements (under the lock, if any).
  std::vector<T> to_vector() const {
    auto guard = locked();
    return std::vector<T>(data(), data() + size());
  }
  // Runs f(std::span<T>) under the lock (if any) and returns its result.
  template <class F>
  decltype(auto) modify(F&& f) {
    auto guard = locked();
    return std::forward<F>(f)(span());
  }
  // All elements, unguarded.
  std::span<T> span() const noexcept { return {data(), size()}; }
  // First element, unguarded (Python's get_obj()).
  T* data() const noexcept { return std::launder(reinterpret_cast<T*>(obj_.data)); }
  // Iteration over the elements, unguarded.
  T* begin() const noexcept { return data(); }
  // End of the elements.
  T* end() const noexcept { return data() + size(); }

  // The RLock guarding the array; InvalidStateError for a raw array.
  RLock get_lock() const {
    if (!obj_.lock) throw InvalidStateError("Array has no lock (created with lock = false)");
    return RLock(obj_.seg, obj_.lock_offset, obj_.lock);
  }
  // Whether the array has a lock.
  bool has_lock() const noexcept { return obj_.lock != nullptr; }

  // The export hook: see detail/ipc_segment.hpp.
  detail::ShmHandle handle() const {
    return detail::data_object_handle(obj_, detail::IpcKind::array);
  }
  // The Array `handle` names; std::invalid_argument if it holds a different sizeof(T).
  static Array attach(const detail::ShmHandle& handle) {
    return Array(detail::attach_data_object(handle, detail::IpcKind::array, sizeof(T)));
  }

 private:
  explicit Array(detail::DataObject obj) : obj_(std::move(obj)) {}
  Array(std::span<const T> init, bool lock)
      : obj_(detail::make_data_object(detail::IpcKind::array, sizeof(T), alignof(T),
                                      init.size(), lock)) {
    for (std::size_t i = 0; i < init.size(); ++i) ::new (static_cast<void*>(slot(i))) T(init[i]);
  }
  std::byte* slot(std::size_t i) const noexcept { return obj_.data + i * sizeof(T); }
  void check(std::size_t i) const {
    if (i >= size())
      throw std::out_of_range("Array index " + std::to_string(i) + " out of range (size " +
                              std::to_string(size()) + ")");
  }
  detail::MutexGuard locked() const { return detail::MutexGuard(obj_.lock); }
  detail::DataObject obj_;
};

// An Array without a lock (Python's multiprocessing.RawArray) of `size` zero elements.
template <class T>
Array<T> RawArray(std::size_t size) {
  return Array<T>(size, false);
}
// An Array without a lock holding a copy of `init`.
template <class T>
Array<T> RawArray(std::initializer_list<T> init) {
  return Array<T>(init, false);
}

}  // namespace concur
