// Shared by the fuzz targets: a way to report a broken property, and a probe of the
// largest single allocation (sanitizer builds only: it uses the sanitizer allocator's
// hooks, which libFuzzer's own -malloc_limit_mb cannot relate to the input size).
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CONCUR_FUZZ_ALLOC_PROBE 1
#endif
#elif defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CONCUR_FUZZ_ALLOC_PROBE 1
#endif

#if defined(CONCUR_FUZZ_ALLOC_PROBE)
#include <sanitizer/allocator_interface.h>
#endif

namespace concur_fuzz {

// Prints why and aborts, which libFuzzer (and the replay driver's test) report as a crash.
[[noreturn]] inline void broken(const char* what, const char* detail = "") {
  std::fprintf(stderr, "concur fuzz: property broken: %s %s\n", what, detail);
  std::fflush(stderr);
  std::abort();
}

// Records the largest allocation made while armed (all threads; the targets are single
// threaded). A no-op without a sanitizer allocator.
class AllocProbe {
 public:
  static void arm() noexcept {
    max_ = 0;
    armed_ = true;
  }
  static std::size_t disarm() noexcept {
    armed_ = false;
    return max_;
  }
  // While a test double's own allocations should not count.
  struct Pause {
    bool was = armed_;
    Pause() noexcept { armed_ = false; }
    ~Pause() { armed_ = was; }
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;
  };
  static bool enabled() noexcept {
#if defined(CONCUR_FUZZ_ALLOC_PROBE)
    return true;
#else
    return false;
#endif
  }
  static void install() noexcept {
#if defined(CONCUR_FUZZ_ALLOC_PROBE)
    static const bool once = [] {
      __sanitizer_install_malloc_and_free_hooks(&on_malloc, &on_free);
      return true;
    }();
    static_cast<void>(once);
#endif
  }

 private:
  static void on_malloc(const volatile void*, std::size_t n) {
    if (armed_ && n > max_) max_ = n;
  }
  static void on_free(const volatile void*) {}
  static inline bool armed_ = false;
  static inline std::size_t max_ = 0;
};

}  // namespace concur_fuzz
