// Which sanitizer this test build runs under, for tests that scale their workload (ASan
// and TSan run several times slower and keep more memory) or skip what a sanitizer
// cannot do. g++ defines __SANITIZE_*__; clang answers __has_feature.
#pragma once

#if defined(__has_feature)
#define CONCUR_TEST_HAS_FEATURE(x) __has_feature(x)
#else
#define CONCUR_TEST_HAS_FEATURE(x) 0
#endif

namespace test_support {

#if defined(__SANITIZE_ADDRESS__) || CONCUR_TEST_HAS_FEATURE(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__) || CONCUR_TEST_HAS_FEATURE(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif

inline constexpr bool kSanitized = kAddressSanitizer || kThreadSanitizer;

}  // namespace test_support
