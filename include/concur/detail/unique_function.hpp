// A move-only `void(Args...)` callable with small-buffer storage: callbacks may own
// move-only state (coroutine handles, promises, unique_ptrs) which std::function refuses.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace concur::detail {

template <class Signature>
class unique_function;

template <class R, class... Args>
class unique_function<R(Args...)> {
  static constexpr std::size_t kInline = 3 * sizeof(void*);

  struct VTable {
    R (*call)(void*, Args&&...);
    void (*move_to)(void* from, void* to) noexcept;  // move-construct, destroy source
    void (*destroy)(void*) noexcept;
  };

  template <class F>
  static constexpr bool fits_inline = sizeof(F) <= kInline &&
                                      alignof(F) <= alignof(std::max_align_t) &&
                                      std::is_nothrow_move_constructible_v<F>;

  template <class F>
  static constexpr VTable inline_vtable{
      [](void* p, Args&&... a) -> R { return (*static_cast<F*>(p))(std::forward<Args>(a)...); },
      [](void* from, void* to) noexcept {
        ::new (to) F(std::move(*static_cast<F*>(from)));
        static_cast<F*>(from)->~F();
      },
      [](void* p) noexcept { static_cast<F*>(p)->~F(); }};

  template <class F>
  static constexpr VTable heap_vtable{
      [](void* p, Args&&... a) -> R { return (**static_cast<F**>(p))(std::forward<Args>(a)...); },
      [](void* from, void* to) noexcept { *static_cast<F**>(to) = *static_cast<F**>(from); },
      [](void* p) noexcept { delete *static_cast<F**>(p); }};

 public:
  unique_function() noexcept = default;
  unique_function(std::nullptr_t) noexcept {}

  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, unique_function> &&
                                     std::is_invocable_r_v<R, D&, Args...>>>
  unique_function(F&& f) {  // NOLINT(google-explicit-constructor): a callable converts
    if constexpr (fits_inline<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      vt_ = &inline_vtable<D>;
    } else {
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
      vt_ = &heap_vtable<D>;
    }
  }

  unique_function(unique_function&& other) noexcept : vt_(other.vt_) {
    if (vt_) {
      vt_->move_to(other.buf_, buf_);
      other.vt_ = nullptr;
    }
  }
  unique_function& operator=(unique_function&& other) noexcept {
    if (this != &other) {
      reset();
      if (other.vt_) {
        other.vt_->move_to(other.buf_, buf_);
        vt_ = other.vt_;
        other.vt_ = nullptr;
      }
    }
    return *this;
  }
  unique_function(const unique_function&) = delete;
  unique_function& operator=(const unique_function&) = delete;
  ~unique_function() { reset(); }

  void reset() noexcept {
    if (vt_) {
      vt_->destroy(buf_);
      vt_ = nullptr;
    }
  }
  explicit operator bool() const noexcept { return vt_ != nullptr; }
  R operator()(Args... args) { return vt_->call(buf_, std::forward<Args>(args)...); }

 private:
  const VTable* vt_ = nullptr;
  alignas(std::max_align_t) std::byte buf_[kInline];
};

}  // namespace concur::detail
