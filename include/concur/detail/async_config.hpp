// concur/detail/async_config.hpp: makes Asio's coroutine support visible to clang.
//
// Asio 1.22 (Debian 12) enables co_await for clang only when <experimental/coroutine>
// exists, which libstdc++ does not ship; clang 14 has C++20 coroutines and <coroutine>
// works. Included before any Asio header by concur's async headers; a program that
// includes Asio itself before them, under clang, must define ASIO_HAS_CO_AWAIT=1 too.
#pragma once

#if defined(__clang__) && !defined(ASIO_HAS_CO_AWAIT) && defined(__cpp_impl_coroutine)
#if __cpp_impl_coroutine >= 201902L && __has_include(<coroutine>)
#define ASIO_HAS_CO_AWAIT 1
#endif
#endif
