// Calls that cross a process boundary: how a function, its arguments, its result and its
// exception travel between a program and its worker processes.
//
//  - Code travels as an address made position-independent: (module, offset from the
//    module's load address), so a re-executed copy of the program with another ASLR
//    layout finds the same function. The worker checks that the address lies in an
//    executable segment of the module before calling it.
//  - A call is the address of remote_entry<R, Fn, S...> (one instantiation per function
//    type and stored argument types), then the callable (a function pointer's address, or
//    nothing for a lambda without captures, which the worker default-constructs), then
//    the arguments. The entry decodes, calls, and writes the outcome.
//  - Arguments are stored as the function's decayed parameter types when they can be
//    named (so submit(f, "text") for f(std::string) stores a std::string), else as the
//    decayed argument types.
//  - An outcome is a tag byte then the value, or an exception record (type, what(), a
//    code for system_error and concur's errors, the worker's stack).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/task.hpp"
#include "concur/serialize.hpp"

namespace concur {
// Reported (at compile time) for a callable that cannot be re-created in another process.
template <class F>
struct concur_process_pool_callable_not_portable {
  static_assert(sizeof(F) == 0,
                "concur: a process pool runs a function pointer or a lambda without captures "
                "(the worker re-creates it from its type or address); captures, "
                "std::function and other objects with state cannot cross a process boundary: "
                "pass the state as arguments instead");
};
// Reported (at compile time) for an argument type that cannot be serialized.
template <class T>
struct concur_process_pool_argument_not_serializable {
  static_assert(sizeof(T) == 0,
                "concur: this argument type of a process pool task cannot be serialized, so it "
                "cannot be sent to a worker process (see concur/serialize.hpp for what can)");
};
// Reported (at compile time) for a result type that cannot be serialized.
template <class T>
struct concur_process_pool_result_not_serializable {
  static_assert(sizeof(T) == 0,
                "concur: the result type of this process pool task cannot be serialized, so it "
                "cannot come back from a worker process (see concur/serialize.hpp for what can)");
};
}  // namespace concur

namespace concur::detail {

// ---------------------------------------------------------------- code addresses
// Writes addr as (module, offset). Throws SerializationError when addr is in no loaded
// module.
void encode_code_address(Writer& w, std::uintptr_t addr);
// Reads what encode_code_address wrote and returns the address in this process. Throws
// SerializationError unless it is in an executable segment of the named module.
std::uintptr_t decode_code_address(Reader& r);
// "ns::function(int)+0x1c" when a symbol is found, else "0x... (module)".
std::string describe_code_address(std::uintptr_t addr);

// ---------------------------------------------------------------- callables
template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

// Re-created in the worker from its type alone (captureless lambdas, empty functors).
template <class F>
inline constexpr bool is_stateless_callable_v =
    std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>;

template <class F>
inline constexpr bool remote_callable_v = is_function_pointer_v<F> || is_stateless_callable_v<F>;

template <class F>
concept has_single_call_operator = requires { &F::operator(); };

// A lambda with captures (or any functor with state): trivially copyable ones would pass
// for plain data, but what they hold (references, pointers) means nothing elsewhere.
template <class T>
inline constexpr bool is_stateful_callable_v =
    std::is_class_v<T> && has_single_call_operator<T> && !is_stateless_callable_v<T>;

// A value that can be an argument of a remote call.
template <class T>
inline constexpr bool remote_arg_v =
    is_function_pointer_v<T> || (is_stateless_callable_v<T> && !serializable<T>) ||
    (!is_stateful_callable_v<T> && serializable<T> && std::is_same_v<decoded_t<T>, T>);

template <class R>
inline constexpr bool remote_result_v =
    std::is_void_v<R> || (serializable<R> && std::is_same_v<decoded_t<R>, R>);

// ---- stored argument types: the callable's parameters when they can be named
template <class T>
struct storage {
  using type = std::decay_t<T>;
};
template <class C, class Tr>
struct storage<std::basic_string_view<C, Tr>> {
  using type = std::basic_string<C, Tr>;
};
template <class T>
using storage_t = typename storage<std::decay_t<T>>::type;

template <class... Ps>
struct param_list {
  static constexpr std::size_t size = sizeof...(Ps);
};

template <class F>
struct signature_of {
  static constexpr bool known = false;
};
template <class R, class... Ps>
struct signature_of<R (*)(Ps...)> {
  static constexpr bool known = true;
  using params = param_list<Ps...>;
};
template <class R, class... Ps>
struct signature_of<R (*)(Ps...) noexcept> : signature_of<R (*)(Ps...)> {};
template <class M>
struct member_signature {
  static constexpr bool known = false;
};
#define CONCUR_MEMBER_SIG(QUALS)                      \
  template <class R, class C, class... Ps>            \
  struct member_signature<R (C::*)(Ps...) QUALS> {    \
    static constexpr bool known = true;               \
    using params = param_list<Ps...>;                 \
  };
CONCUR_MEMBER_SIG()
CONCUR_MEMBER_SIG(const)
CONCUR_MEMBER_SIG(noexcept)
CONCUR_MEMBER_SIG(const noexcept)
CONCUR_MEMBER_SIG(&)
CONCUR_MEMBER_SIG(const&)
#undef CONCUR_MEMBER_SIG

template <class F>
struct callable_params {
  static constexpr bool known = false;
};
template <class F>
  requires is_function_pointer_v<F>
struct callable_params<F> : signature_of<F> {};
template <class F>
  requires(std::is_class_v<F> && has_single_call_operator<F>)
struct callable_params<F> : member_signature<decltype(&F::operator())> {};

template <class T>
struct is_reference_wrapper : std::false_type {};
template <class T>
struct is_reference_wrapper<std::reference_wrapper<T>> : std::true_type {};

template <class C>
inline constexpr bool is_char_type_v =
    std::is_same_v<C, char> || std::is_same_v<C, wchar_t> || std::is_same_v<C, char8_t> ||
    std::is_same_v<C, char16_t> || std::is_same_v<C, char32_t>;

// Whether storing an argument of type A as S keeps its meaning in another process. A
// std::ref, a pointer or a capturing lambda converts to a parameter type that can be
// serialized (int& from std::ref(x), bool from a pointer...), but the callee would then
// work on a copy of what the caller meant to share: such an argument keeps its own type,
// which cannot cross a process boundary, so the task stays local-only. The one pointer
// that converts faithfully is a C string becoming an owning string.
template <class A, class S>
inline constexpr bool faithful_conversion_v = [] {
  using D = std::decay_t<A>;
  if constexpr (is_reference_wrapper<D>::value || std::is_member_pointer_v<D> ||
                is_stateful_callable_v<D>)
    return false;
  else if constexpr (std::is_pointer_v<D> && !is_function_pointer_v<D>)
    return is_char_type_v<std::remove_cv_t<std::remove_pointer_t<D>>> && std::is_class_v<S>;
  else
    return true;
}();

template <class PL, class... Args>
struct stored_from_params;
template <class... Ps, class... Args>
struct stored_from_params<param_list<Ps...>, Args...> {
  static constexpr bool ok =
      sizeof...(Ps) == sizeof...(Args) &&
      (std::is_constructible_v<storage_t<Ps>, Args&&> && ...) &&
      (faithful_conversion_v<Args, storage_t<Ps>> && ...);
  using type = std::tuple<storage_t<Ps>...>;
};

// The tuple of types a task stores for fn(args...).
template <class Fn, class... Args>
struct stored_args {
  using type = std::tuple<std::decay_t<Args>...>;
};
template <class Fn, class... Args>
  requires(callable_params<Fn>::known &&
           callable_params<Fn>::params::size == sizeof...(Args) &&
           stored_from_params<typename callable_params<Fn>::params, Args...>::ok)
struct stored_args<Fn, Args...> {
  using type = typename stored_from_params<typename callable_params<Fn>::params, Args...>::type;
};
template <class Fn, class... Args>
using stored_args_t = typename stored_args<Fn, Args...>::type;

// Calls fn with the stored arguments, moving them unless a parameter wants an lvalue.
template <class Fn, class... S>
decltype(auto) call_stored(Fn& fn, std::tuple<S...>& args) {
  return std::apply(
      [&fn](S&... a) -> decltype(auto) {
        if constexpr (std::is_invocable_v<Fn&, S&&...>) return std::invoke(fn, std::move(a)...);
        else return std::invoke(fn, a...);
      },
      args);
}

// ---------------------------------------------------------------- values
template <class T>
void encode_remote_value(Writer& w, const T& v) {
  if constexpr (is_function_pointer_v<T>) encode_code_address(w, reinterpret_cast<std::uintptr_t>(v));
  else if constexpr (is_stateless_callable_v<T> && !serializable<T>) static_cast<void>(v);
  else encode(w, v);
}
template <class T>
T decode_remote_value(Reader& r) {
  if constexpr (is_function_pointer_v<T>) return reinterpret_cast<T>(decode_code_address(r));
  else if constexpr (is_stateless_callable_v<T> && !serializable<T>) return T{};
  else return decode<T>(r);
}

// ---------------------------------------------------------------- outcomes and exceptions
inline constexpr std::uint8_t kOutcomeValue = 0;
inline constexpr std::uint8_t kOutcomeException = 1;

// Writes the exception being handled as an outcome record (worker side). fn_addr (0 when
// unknown) and fn_type name the function that was called; the record carries them with
// the worker's stack where the exception was caught.
void encode_current_exception(Writer& w, std::uintptr_t fn_addr, std::string_view fn_type) noexcept;
// Rebuilds an exception from a record (parent side): the registered type when there is
// one, else concur::RemoteError. Never throws; a corrupt record becomes SerializationError.
std::exception_ptr decode_exception(Reader& r) noexcept;

// Exceptions raised while reading an outcome become the task's SerializationError.
std::exception_ptr as_serialization_error(std::exception_ptr e) noexcept;

using ExceptionFactory = std::exception_ptr (*)(const std::string& what);
void register_exception_factory(const char* mangled_name, ExceptionFactory factory);

// ---------------------------------------------------------------- the entry
using RemoteEntry = void (*)(Reader& in, Writer& out);

// What a worker of any pool does with a call: decodes its entry and runs it; the outcome
// is in `out` afterwards (an exception record when the entry is not valid code here).
void run_remote_call(Reader& in, Writer& out) noexcept;
// Whether an outcome written by run_remote_call holds an exception, and its "what" text.
bool is_exception_outcome(std::span<const std::byte> outcome) noexcept;
std::string exception_outcome_text(std::span<const std::byte> outcome);

// Runs in the worker: decodes the callable and arguments, calls, writes the outcome.
// Failures to decode the arguments or encode the result are SerializationErrors; what the
// function itself throws travels as it is.
template <class R, class Fn, class... S>
void remote_entry(Reader& in, Writer& out) {
  std::uintptr_t fn_addr = 0;
  try {
    std::optional<Fn> fn;
    std::optional<std::tuple<S...>> args;
    try {
      fn.emplace(decode_remote_value<Fn>(in));
      if constexpr (is_function_pointer_v<Fn>) fn_addr = reinterpret_cast<std::uintptr_t>(*fn);
      args.emplace(std::tuple<S...>{decode_remote_value<S>(in)...});  // braces: in order
      if (in.remaining() != 0)
        throw SerializationError("concur: " + std::to_string(in.remaining()) +
                                 " unexpected bytes after the arguments of a remote call");
    } catch (...) {
      std::rethrow_exception(as_serialization_error(std::current_exception()));
    }
    if constexpr (std::is_void_v<R>) {
      call_stored(*fn, *args);
      *out.grow(1) = std::byte{kOutcomeValue};
    } else {
      R result = call_stored(*fn, *args);
      try {
        *out.grow(1) = std::byte{kOutcomeValue};
        encode(out, result);
      } catch (...) {
        std::rethrow_exception(as_serialization_error(std::current_exception()));
      }
    }
  } catch (...) {
    out.clear();
    encode_current_exception(out, fn_addr, type_name<Fn>);
  }
}

// Encoded once per instantiation: the entry's address never changes in a process.
template <class R, class Fn, class... S>
std::span<const std::byte> entry_reference() {
  static const std::vector<std::byte> ref = [] {
    Writer w;
    RemoteEntry e = &remote_entry<R, Fn, S...>;
    encode_code_address(w, reinterpret_cast<std::uintptr_t>(e));
    auto b = w.bytes();
    return std::vector<std::byte>(b.begin(), b.end());
  }();
  return ref;
}

// Writes a whole call: entry, callable, arguments.
template <class R, class Fn, class... S>
void encode_call(Writer& w, const Fn& fn, const std::tuple<S...>& args) {
  auto ref = entry_reference<R, Fn, S...>();
  w.write_bytes(ref.data(), ref.size());
  encode_remote_value<Fn>(w, fn);
  std::apply([&](const S&... a) { (encode_remote_value<S>(w, a), ...); }, args);
}

// Reads the outcome into a claimed state (the caller publishes with end_complete()).
template <class R>
void decode_outcome(FutureState<R>& state, Reader& r) noexcept {
  try {
    auto tag = std::to_integer<std::uint8_t>(*r.take(1));
    if (tag == kOutcomeValue) {
      if constexpr (std::is_void_v<R>) {
        state.store_value();
      } else {
        state.store_value(decode<R>(r));
      }
      if (r.remaining() != 0)
        throw SerializationError("concur: unexpected bytes after a remote result");
    } else if (tag == kOutcomeException) {
      state.store_exception(decode_exception(r));
    } else {
      throw SerializationError("concur: corrupt outcome of a remote call");
    }
  } catch (...) {
    state.store_exception(as_serialization_error(std::current_exception()));
  }
}

// ---------------------------------------------------------------- remote work
class ProcessEngine;

// The remote face of a task (SharedState::as_remote()). The engine keeps its
// bookkeeping here, so a task needs no side allocation.
class RemoteWork {
 public:
  // The call, encoded (entry, callable, arguments).
  virtual void encode_call(Writer& w) const = 0;
  // Reads the outcome into the claimed state.
  virtual void decode_outcome(Reader& r) noexcept = 0;
  // Stores an exception in the claimed state (the caller publishes).
  virtual void store_failure(std::exception_ptr e) noexcept = 0;
  // Frees the argument copies kept for running locally, once the call is encoded.
  virtual void drop_arguments() noexcept = 0;
  virtual SharedState& shared_state() noexcept = 0;

  // ---- engine bookkeeping (owned by the engine that accepted the task)
  std::shared_ptr<ProcessEngine> engine;
  std::vector<std::byte> payload;          // the encoded call (inline part)
  std::vector<std::uint64_t> blocks;       // out-of-band request blocks
  std::uint64_t spill_id = 0;              // payload spilled to the request area
  std::size_t spill_len = 0;
  std::uint64_t seq = 0;                   // per-worker sequence number once dispatched
  int worker = -1;                         // worker slot once dispatched
  bool marked_running = false;             // set_running_or_notify_cancel() done

 protected:
  RemoteWork() = default;
  ~RemoteWork() = default;
};

// Asks the engine running `w` to kill its worker (Future::cancel(kill_running)).
bool request_remote_kill(RemoteWork& w) noexcept;
// Lets a thread waiting for `w` collect results itself instead of sleeping until the
// engine's collector thread wakes it (used by SharedState's wait hook when present).
void remote_help_wait(const RemoteWork& w, const SharedState& state, const Deadline& deadline) noexcept;

// SharedState::wait() calls help_wait() first when the foundation provides the hook;
// tasks of a process pool override it with the engine's leader/follower collection.
#if defined(CONCUR_SHARED_STATE_HAS_HELP_WAIT)
#define CONCUR_REMOTE_HELP_WAIT                                                 \
  void help_wait(const Deadline& deadline) const noexcept override {           \
    remote_help_wait(*this, *this, deadline);                                  \
  }
#else
#define CONCUR_REMOTE_HELP_WAIT
#endif

// A task that can run here (thread pools, through Executor&) or in a worker process.
template <class R, class Fn, class... S>
class RemoteTask final : public FutureState<R>, public RemoteWork {
 public:
  template <class F2, class... A2>
  explicit RemoteTask(F2&& fn, A2&&... args)
      : call_(std::in_place, std::forward<F2>(fn), std::tuple<S...>(std::forward<A2>(args)...)) {}

  bool run() noexcept override {
    bool claimed = this->try_begin_complete();
    if (claimed) {
      store_outcome(*this, [this]() -> R {
        auto& [fn, args] = *call_;
        if constexpr (std::is_void_v<R>) call_stored(fn, args);
        else return call_stored(fn, args);
      });
    }
    call_.reset();
    return claimed;
  }
  RemoteWork* as_remote() noexcept override { return this; }
  bool request_kill() noexcept override { return request_remote_kill(*this); }
  CONCUR_REMOTE_HELP_WAIT

  void encode_call(Writer& w) const override {
    const auto& [fn, args] = *call_;
    concur::detail::encode_call<R, Fn, S...>(w, fn, args);
  }
  void decode_outcome(Reader& r) noexcept override { concur::detail::decode_outcome<R>(*this, r); }
  void store_failure(std::exception_ptr e) noexcept override { this->store_exception(std::move(e)); }
  void drop_arguments() noexcept override { call_.reset(); }
  SharedState& shared_state() noexcept override { return *this; }

 private:
  std::optional<std::pair<Fn, std::tuple<S...>>> call_;
};

// A task whose arguments are borrowed from the submitting call and encoded before
// submit() returns (ProcessPoolExecutor::submit): no copy of a large argument is made
// before it is written to shared memory. It cannot run in place.
template <class R, class Fn, class Stored, class... A>
class BorrowedRemoteTask;
template <class R, class Fn, class... S, class... A>
class BorrowedRemoteTask<R, Fn, std::tuple<S...>, A...> final : public FutureState<R>,
                                                                public RemoteWork {
 public:
  BorrowedRemoteTask(const Fn& fn, A&... args) : fn_(fn), args_(args...) {}

  bool run() noexcept override {
    // Never queued on a thread pool: ProcessPoolExecutor only hands it to its engine.
    if (!this->try_begin_complete()) return false;
    this->store_exception(std::make_exception_ptr(
        InvalidStateError("concur: a process pool task cannot run in place")));
    return true;
  }
  RemoteWork* as_remote() noexcept override { return this; }
  bool request_kill() noexcept override { return request_remote_kill(*this); }
  CONCUR_REMOTE_HELP_WAIT

  void encode_call(Writer& w) const override {
    if (!live_) throw InvalidStateError("concur: the arguments of this task are gone");
    auto ref = entry_reference<R, Fn, S...>();
    w.write_bytes(ref.data(), ref.size());
    encode_remote_value<Fn>(w, fn_);
    encode_args(w, std::index_sequence_for<S...>{});
  }
  void decode_outcome(Reader& r) noexcept override { concur::detail::decode_outcome<R>(*this, r); }
  void store_failure(std::exception_ptr e) noexcept override { this->store_exception(std::move(e)); }
  void drop_arguments() noexcept override { live_ = false; }
  SharedState& shared_state() noexcept override { return *this; }

 private:
  template <std::size_t... I>
  void encode_args(Writer& w, std::index_sequence<I...>) const {
    (encode_one<S, A>(w, std::get<I>(args_)), ...);
  }
  template <class Si, class Ai>
  static void encode_one(Writer& w, Ai& a) {
    if constexpr (std::is_same_v<std::remove_cvref_t<Ai>, Si>) encode_remote_value<Si>(w, a);
    else encode_remote_value<Si>(w, Si(static_cast<Ai&&>(a)));
  }

  Fn fn_;
  std::tuple<A&...> args_;
  bool live_ = true;
};

template <class R, class Fn, class Tuple>
struct remote_task_for;
template <class R, class Fn, class... S>
struct remote_task_for<R, Fn, std::tuple<S...>> {
  using type = RemoteTask<R, Fn, S...>;
  static constexpr bool portable = remote_callable_v<Fn> && remote_result_v<R> && (remote_arg_v<S> && ...);
};

// True when fn(args...) can run in a worker process.
template <class R, class Fn, class... Args>
inline constexpr bool remote_portable_v =
    remote_task_for<R, Fn, stored_args_t<Fn, Args...>>::portable;

// Builds the remote task for fn(args...) (precondition: remote_portable_v).
template <class R, class F, class... Args>
StatePtr<FutureState<R>> make_remote_task(F&& fn, Args&&... args) {
  using Fn = std::decay_t<F>;
  using Task = typename remote_task_for<R, Fn, stored_args_t<Fn, Args...>>::type;
  return StatePtr<FutureState<R>>(new Task(std::forward<F>(fn), std::forward<Args>(args)...));
}

// The borrowing task for fn(args...): the caller encodes it before args go out of scope.
template <class R, class F, class... Args>
StatePtr<FutureState<R>> make_borrowed_remote_task(F&& fn, Args&&... args) {
  using Fn = std::decay_t<F>;
  using Task = BorrowedRemoteTask<R, Fn, stored_args_t<Fn, Args...>, Args...>;
  return StatePtr<FutureState<R>>(new Task(Fn(std::forward<F>(fn)), args...));
}

// ---------------------------------------------------------------- compile-time checks
template <class T>
constexpr void check_remote_argument() {
  if constexpr (!remote_arg_v<T>) {
    static_cast<void>(sizeof(concur_process_pool_argument_not_serializable<T>));
    if constexpr (!serializable<T>) {
      using C = codec<T>;
      using culprit = std::conditional_t<C::enc, typename C::dec_culprit, typename C::enc_culprit>;
      if constexpr (!std::is_void_v<culprit>)
        static_cast<void>(sizeof(concur_type_is_not_serializable<culprit>));
    }
  }
}
template <class R>
constexpr void check_remote_result() {
  if constexpr (!remote_result_v<R>) {
    static_cast<void>(sizeof(concur_process_pool_result_not_serializable<R>));
  }
}
template <class Fn>
constexpr void check_remote_callable() {
  if constexpr (!remote_callable_v<Fn>)
    static_cast<void>(sizeof(concur_process_pool_callable_not_portable<Fn>));
}
template <class R, class Fn, class Tuple>
struct remote_checks;
template <class R, class Fn, class... S>
struct remote_checks<R, Fn, std::tuple<S...>> {
  static constexpr bool run() {
    check_remote_callable<Fn>();
    (check_remote_argument<S>(), ...);
    check_remote_result<R>();
    return true;
  }
};

// Static checks of ProcessPoolExecutor::submit(fn, args...): each failure names the
// offending type in the error.
template <class R, class F, class... Args>
constexpr bool check_remote_call() {
  using Fn = std::decay_t<F>;
  return remote_checks<R, Fn, stored_args_t<Fn, Args...>>::run();
}

}  // namespace concur::detail
