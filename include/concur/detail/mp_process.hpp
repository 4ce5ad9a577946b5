// Machinery of concur::Process (concur/process.hpp): how a target and its arguments are
// encoded in the parent and run in the child.
//
// The child is started by the process engine's launcher (detail/process_launcher.hpp)
// in the call_once role; its hand-shake carries [entry][meta][target][arguments] and the
// descriptors the arguments need. `entry` is the address of process_entry<Fn, S...> (or
// subclass_entry<D>), which the engine's run_call finds and calls. The entry never
// returns: it decodes the meta (name, daemon flag, parent identity, identities of the
// passed descriptors), the target and the arguments, runs the target and leaves with
// _exit and Python's exit codes (0, or 1 when the target threw; std::exit(n) and
// _exit(n) in the target keep their n).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "concur/detail/process_handoff.hpp"
#include "concur/detail/remote_call.hpp"
#include "concur/serialize.hpp"

namespace concur {

class Connection;
class Process;

// Reported (at compile time) for a Process target that cannot be re-created in a child.
template <class F>
struct concur_process_target_not_portable {
  static_assert(sizeof(F) == 0,
                "concur: a Process runs a function pointer or a lambda without captures (the "
                "child re-creates it from its address or type); captures, std::function and "
                "other objects with state cannot cross a process boundary: pass the state as "
                "arguments instead");
};
// Reported (at compile time) for a Process argument that cannot be serialized.
template <class T>
struct concur_process_argument_not_serializable {
  static_assert(sizeof(T) == 0,
                "concur: this argument type of a Process cannot be serialized, so it cannot be "
                "sent to the child (see concur/serialize.hpp for what can; Queue, Connection, "
                "Lock, Value and the other concur objects can)");
};
// Reported (at compile time) when the target cannot be called with the arguments.
template <class F>
struct concur_process_target_not_callable_with_these_arguments {
  static_assert(sizeof(F) == 0, "concur: the Process target cannot be called with these arguments");
};

namespace detail {

// What a Process constructor prepares: the encoded entry and body, and the descriptors
// the body exported.
struct PreparedCall {
  std::vector<std::byte> entry;
  std::vector<std::byte> body;
  handoff::Exporter exporter;
  // Encodes a subclass's state at start() (ProcessSubclass); null for function targets.
  void (*encode_self)(Writer&, const Process&) = nullptr;
};

// ---------------------------------------------------------------- child side
// The start of a child: decodes the meta and prepares the Importer. A failure here is
// reported on stderr and ends the child with exit code 1.
class ChildStart {
 public:
  explicit ChildStart(Reader& in) noexcept;
  ChildStart(const ChildStart&) = delete;
  ChildStart& operator=(const ChildStart&) = delete;
  handoff::Importer& importer() noexcept { return *importer_; }
  // Where the target and arguments are: `in` itself, or the memfd a large body came in.
  Reader& body(Reader& in) noexcept;
  // The arguments are decoded: closes the descriptors nobody took and starts what the
  // process's flags ask for (the daemon watchdog).
  void arguments_decoded() noexcept;
  const std::string& name() const noexcept;
  bool daemon() const noexcept;

 private:
  std::optional<handoff::Importer> importer_;
};

// Reports a failure to decode the target or its arguments and exits with code 1.
[[noreturn]] void child_failed_to_start(std::exception_ptr e) noexcept;
// Runs body(ctx) and exits: 0 when it returns, 1 when it throws (after printing the
// exception as Python prints a traceback), flushing stdio either way.
[[noreturn]] void child_run(void (*body)(void*), void* ctx) noexcept;

template <class Fn, class... S>
struct TargetCall {
  Fn fn;
  std::tuple<S...> args;
  static void run(void* p) {
    auto* self = static_cast<TargetCall*>(p);
    call_stored(self->fn, self->args);
  }
};

template <class Fn, class... S>
void process_entry(Reader& in, Writer&) {
  ChildStart start(in);
  Reader& body = start.body(in);
  std::optional<TargetCall<Fn, S...>> call;
  try {
    handoff::ImportScope scope(start.importer());
    Fn fn = decode_remote_value<Fn>(body);
    call.emplace(
        TargetCall<Fn, S...>{std::move(fn), std::tuple<S...>{decode_remote_value<S>(body)...}});
    if (body.remaining() != 0)
      throw SerializationError("concur: " + std::to_string(body.remaining()) +
                               " unexpected bytes after the arguments of a Process");
  } catch (...) {
    child_failed_to_start(std::current_exception());
  }
  start.arguments_decoded();
  child_run(&TargetCall<Fn, S...>::run, &*call);
}

// ---------------------------------------------------------------- parent side
template <class T>
constexpr void check_process_argument() {
  if constexpr (!remote_arg_v<T>) {
    static_cast<void>(sizeof(concur_process_argument_not_serializable<T>));
    if constexpr (!serializable<T>) {
      using C = codec<T>;
      using culprit = std::conditional_t<C::enc, typename C::dec_culprit, typename C::enc_culprit>;
      if constexpr (!std::is_void_v<culprit>)
        static_cast<void>(sizeof(concur_type_is_not_serializable<culprit>));
    }
  }
}

template <class Si, class Ai>
void encode_process_argument(Writer& w, Ai& a) {
  if constexpr (std::is_same_v<std::remove_cv_t<Ai>, Si>) encode_remote_value<Si>(w, a);
  else encode_remote_value<Si>(w, Si(static_cast<Ai&&>(a)));
}

template <class Fn, class... S, class... A>
PreparedCall prepare_call_as(std::tuple<S...>*, const Fn& fn, A&... args) {
  if constexpr (!remote_callable_v<Fn>) {
    static_cast<void>(sizeof(concur_process_target_not_portable<Fn>));
    return {};
  } else if constexpr (!(remote_arg_v<S> && ...)) {
    (check_process_argument<S>(), ...);
    return {};
  } else if constexpr (!std::is_invocable_v<Fn&, S&...> && !std::is_invocable_v<Fn&, S&&...>) {
    static_cast<void>(sizeof(concur_process_target_not_callable_with_these_arguments<Fn>));
    return {};
  } else {
    PreparedCall pc;
    Writer e;
    RemoteEntry entry = &process_entry<Fn, S...>;
    encode_code_address(e, reinterpret_cast<std::uintptr_t>(entry));
    auto eb = e.bytes();
    pc.entry.assign(eb.begin(), eb.end());
    Writer b;
    {
      handoff::ExportScope scope(pc.exporter);
      encode_remote_value<Fn>(b, fn);
      (encode_process_argument<S, A>(b, args), ...);
    }
    auto bb = b.bytes();
    pc.body.assign(bb.begin(), bb.end());
    return pc;
  }
}

// Encodes target(args...) for a child; the argument types stored are those remote_call.hpp
// picks for a pool task (the target's parameter types when they can be named).
template <class F, class... Args>
PreparedCall prepare_call(F& fn, Args&... args) {
  using Fn = std::decay_t<F>;
  using Stored = stored_args_t<Fn, Args...>;
  return prepare_call_as(static_cast<Stored*>(nullptr), static_cast<const Fn&>(fn), args...);
}

// A Connection given by rvalue is given away: the parent keeps no copy open (its
// duplicate travels with the hand-shake), so the peer sees EOF when the child ends.
template <class T>
void give_away(T&&) noexcept {}
void give_away(Connection&& c) noexcept;

// ---------------------------------------------------------------- subclasses
template <class D>
inline constexpr bool has_state_v = cereal::traits::is_output_serializable<D, CerealOut>::value &&
                                    cereal::traits::is_input_serializable<D, CerealIn>::value;

template <class D>
void encode_subclass(Writer& w, const Process& self) {
  if constexpr (has_state_v<D>) {
    const D& d = static_cast<const D&>(self);
    with_out_archive<D>(w, [&](CerealOut& ar) { ar(d); });
  } else {
    static_cast<void>(w);
    static_cast<void>(self);
  }
}

template <class D>
struct SubclassRun {
  D* d;
  static void run(void* p) { static_cast<SubclassRun*>(p)->d->run(); }
};

// Defined in process.hpp (needs the complete Process).
template <class D>
void subclass_entry(Reader& in, Writer&);

}  // namespace detail
}  // namespace concur
