// Private helpers shared by the process engine's translation units.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace concur::detail {

// Sanitizers shape some limits (address space under TSan, timeouts).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CONCUR_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define CONCUR_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CONCUR_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CONCUR_ASAN 1
#endif

// The running executable's identity: its GNU build-id when it has one, otherwise a
// digest of (device, inode, size, mtime) of /proc/self/exe. Computed once.
const std::vector<std::byte>& self_build_id();

// Readable C++ name of a mangled one (src/demangle.cpp; declared here because
// demangle.hpp's type_name<T>() clashes with the serializer's type_name<T> variable).
std::string demangle(const char* mangled);

// Physical memory in bytes (for sizing the sparse shared areas).
std::size_t physical_memory() noexcept;

// "SIGSEGV" for 11, "signal 77" for unknown numbers.
std::string signal_name(int sig);

// Prints a one-line diagnostic on stderr for failures that have nobody to report to
// (a fork server or worker that lost its parent). Async-signal-safe enough: one write().
void emit_diagnostic(const char* what) noexcept;

// The fast 64-bit hash used to check message integrity.
std::uint64_t hash_bytes(const void* data, std::size_t n, std::uint64_t seed) noexcept;

// Environment marker that turns a re-executed copy of the program into a library process
// before main(): "<role>:<fd>" with role "child" (worker or one-shot process, fd = control
// socket) or "server" (fork server, fd = its master socket).
inline constexpr const char* kBootstrapEnv = "CONCUR_PROCESS_BOOTSTRAP";

struct HelloReply;
// Answers the parent's Hello (child side); never throws.
void send_hello_reply(int control, const HelloReply& reply) noexcept;

// Replace process-wide tables whose locks another thread may have held at fork() time
// (called in a zygote right after it is forked; see remote.cpp and launcher.cpp).
void prepare_remote_state_for_fork();  // in the forking thread, before fork()
void reset_remote_state_after_fork() noexcept;
void reset_launcher_state_after_fork() noexcept;

// Entry points of the library roles (never return).
[[noreturn]] void run_child_role(int control_fd) noexcept;
[[noreturn]] void run_fork_server(int master_fd, bool zygote) noexcept;

// Forces the object file with the pre-main hook into every program that can start
// processes (the launcher references it).
extern volatile int bootstrap_anchor;

}  // namespace concur::detail
