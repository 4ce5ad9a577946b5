// Code addresses that survive ASLR, and exceptions that cross processes.
#if defined(__SANITIZE_ADDRESS__)
#define CONCUR_HAS_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define CONCUR_HAS_LSAN 1
#endif
#endif
#ifndef CONCUR_HAS_LSAN
#define CONCUR_HAS_LSAN 0
#endif
#if CONCUR_HAS_LSAN
#include <sanitizer/lsan_interface.h>
#endif
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <ios>
#include <map>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <typeinfo>
#include <variant>
#include <optional>
#include <functional>
#include <unordered_map>
#include <vector>

#include "concur/detail/remote_call.hpp"
#include "concur/errors.hpp"
#include "process/internal.hpp"

namespace concur::detail {

// ================================================================ code addresses
namespace {

struct Module {
  std::string name;  // "" for the executable
  std::uintptr_t base = 0;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> exec;  // executable segments
  bool contains(std::uintptr_t a) const {
    for (auto& [lo, hi] : exec)
      if (a >= lo && a < hi) return true;
    return false;
  }
};

struct ModuleTable {
  std::shared_mutex mu;
  std::vector<Module> modules;  // [0] is the executable
};

// Process-wide tables live behind atomic pointers, never destroyed (worker code uses them
// until _exit), so that a zygote can replace them right after fork(): a lock another
// thread held at that moment would otherwise stay locked forever in every worker.
template <class T>
T& lazy_global(std::atomic<T*>& slot) {
  T* p = slot.load(std::memory_order_acquire);
  if (!p) {
    T* fresh = new T;
    if (slot.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) p = fresh;
    else delete fresh;
  }
  return *p;
}

// A table dropped on purpose after fork (see reset_remote_state_after_fork): under
// LeakSanitizer it would be reported when a fork child exits, so it is marked as known.
void ignore_leak([[maybe_unused]] const void* p) noexcept {
#if CONCUR_HAS_LSAN
  if (p) __lsan_ignore_object(p);
#endif
}

std::atomic<ModuleTable*> g_modules{nullptr};
ModuleTable& modules() { return lazy_global(g_modules); }

int collect_module(dl_phdr_info* info, std::size_t, void* out) {
  auto* v = static_cast<std::vector<Module>*>(out);
  Module m;
  m.name = (v->empty() || !info->dlpi_name) ? std::string() : std::string(info->dlpi_name);
  m.base = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
      m.exec.emplace_back(info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
  }
  v->push_back(std::move(m));
  return 0;
}

void rebuild_locked(ModuleTable& t) {
  std::vector<Module> v;
  dl_iterate_phdr(collect_module, &v);
  t.modules = std::move(v);
}

// Finds the module holding addr: (index, base). Rebuilds once on a miss (dlopen).
const Module* find_module(std::uintptr_t addr, std::shared_lock<std::shared_mutex>& lock) {
  ModuleTable& t = modules();
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (auto& m : t.modules)
      if (m.contains(addr)) return &m;
    lock.unlock();
    {
      std::unique_lock w(t.mu);
      rebuild_locked(t);
    }
    lock.lock();
  }
  return nullptr;
}

const Module* find_module_by_name(const std::string& name,
                                  std::shared_lock<std::shared_mutex>& lock) {
  ModuleTable& t = modules();
  for (int attempt = 0; attempt < 3; ++attempt) {
    for (auto& m : t.modules)
      if (m.name == name && (!name.empty() || &m == &t.modules.front())) return &m;
    lock.unlock();
    // A library the parent loaded with dlopen() after this process was started (spawn,
    // forkserver): load it here too, from the same path, before giving up.
    if (attempt == 1 && !name.empty()) ::dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    {
      std::unique_lock w(t.mu);
      rebuild_locked(t);
    }
    lock.lock();
  }
  return nullptr;
}

}  // namespace

void encode_code_address(Writer& w, std::uintptr_t addr) {
  std::shared_lock lock(modules().mu);
  const Module* m = find_module(addr, lock);
  if (!m)
    throw SerializationError("concur: a function address (" + std::to_string(addr) +
                             ") is not in any loaded module; it cannot be called elsewhere");
  std::uint32_t n = static_cast<std::uint32_t>(m->name.size());
  std::uint64_t off = addr - m->base;
  std::byte* p = w.grow(4 + n + 8);
  std::memcpy(p, &n, 4);
  std::memcpy(p + 4, m->name.data(), n);
  std::memcpy(p + 4 + n, &off, 8);
}

std::uintptr_t decode_code_address(Reader& r) {
  std::uint32_t n;
  r.read_bytes(&n, 4);
  if (n > 4096) throw SerializationError("concur: corrupt code reference (module name length)");
  std::string name(n, '\0');
  r.read_bytes(name.data(), n);
  std::uint64_t off;
  r.read_bytes(&off, 8);
  std::shared_lock lock(modules().mu);
  const Module* m = find_module_by_name(name, lock);
  if (!m)
    throw SerializationError("concur: the module " + name +
                             " of a remote function is not loaded in the worker");
  std::uintptr_t addr = m->base + off;
  if (!m->contains(addr))
    throw SerializationError("concur: a remote function address is not code of " +
                             (name.empty() ? std::string("the executable") : name) +
                             " (corrupt message or different build)");
  return addr;
}

// ================================================================ symbols
namespace {

// The function symbols of an ELF file's .symtab (the executable's own functions are not in
// the dynamic table dladdr reads).
class SymbolFile {
 public:
  explicit SymbolFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(ElfW(Ehdr)))) {
      ::close(fd);
      return;
    }
    std::size_t size = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return;
    const auto* base = static_cast<const unsigned char*>(p);
    const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(base);
    if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shoff == 0 ||
        eh->e_shoff + eh->e_shnum * sizeof(ElfW(Shdr)) > size) {
      ::munmap(p, size);
      return;
    }
    const auto* sh = reinterpret_cast<const ElfW(Shdr)*>(base + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; ++i) {
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      if (sh[i].sh_link >= eh->e_shnum) break;
      const ElfW(Shdr)& strs = sh[sh[i].sh_link];
      if (sh[i].sh_offset + sh[i].sh_size > size || strs.sh_offset + strs.sh_size > size) break;
      const auto* syms = reinterpret_cast<const ElfW(Sym)*>(base + sh[i].sh_offset);
      std::size_t count = sh[i].sh_size / sizeof(ElfW(Sym));
      const char* names = reinterpret_cast<const char*>(base + strs.sh_offset);
      for (std::size_t k = 0; k < count; ++k) {
        if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_value == 0) continue;
        if (syms[k].st_name >= strs.sh_size) continue;
        syms_.push_back({syms[k].st_value, syms[k].st_size, names + syms[k].st_name});
      }
      break;
    }
    std::sort(syms_.begin(), syms_.end(),
              [](const Sym& a, const Sym& b) { return a.addr < b.addr; });
    // The strings point into the mapping, which stays for the life of the process.
  }

  // (name, offset into it) of the function containing `offset` (file-relative address).
  std::optional<std::pair<const char*, std::uintptr_t>> lookup(std::uintptr_t addr) const {
    auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                               [](std::uintptr_t a, const Sym& s) { return a < s.addr; });
    if (it == syms_.begin()) return std::nullopt;
    --it;
    if (addr >= it->addr + std::max<std::uintptr_t>(it->size, 1)) return std::nullopt;
    return std::make_pair(it->name, addr - it->addr);
  }

 private:
  struct Sym {
    std::uintptr_t addr;
    std::uintptr_t size;
    const char* name;
  };
  std::vector<Sym> syms_;
};

struct SymbolCache {
  std::mutex mu;
  std::map<std::string, SymbolFile> files;
};
std::atomic<SymbolCache*> g_symbols{nullptr};

const SymbolFile& symbols_of(const std::string& module) {
  SymbolCache& c = lazy_global(g_symbols);
  std::lock_guard lock(c.mu);
  auto it = c.files.find(module);
  if (it == c.files.end())
    it = c.files.emplace(module, SymbolFile(module.empty() ? "/proc/self/exe" : module)).first;
  return it->second;
}

}  // namespace

std::string describe_code_address(std::uintptr_t addr) {
  std::string module;
  std::uintptr_t base = 0;
  {
    std::shared_lock lock(modules().mu);
    if (const Module* m = find_module(addr, lock)) {
      module = m->name;
      base = m->base;
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%zx", static_cast<std::size_t>(addr));
      return buf;
    }
  }
  char off[40];
  if (auto s = symbols_of(module).lookup(addr - base)) {
    std::snprintf(off, sizeof off, "+0x%zx", static_cast<std::size_t>(s->second));
    return demangle(s->first) + off;
  }
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(addr), &info) && info.dli_sname) {
    std::snprintf(off, sizeof off, "+0x%zx",
                  static_cast<std::size_t>(addr - reinterpret_cast<std::uintptr_t>(info.dli_saddr)));
    return demangle(info.dli_sname) + off;
  }
  std::snprintf(off, sizeof off, "0x%zx", static_cast<std::size_t>(addr - base));
  return std::string(off) + " in " + (module.empty() ? "the executable" : module);
}

// ================================================================ exceptions
namespace {

struct Registry {
  std::shared_mutex mu;
  std::unordered_map<std::string, ExceptionFactory> factories;
};

template <class E>
std::exception_ptr make_with_what(const std::string& what) {
  return std::make_exception_ptr(E(what));
}
template <class E>
std::exception_ptr make_default(const std::string&) {
  return std::make_exception_ptr(E());
}

void add_builtin_exceptions(Registry* reg);
std::atomic<Registry*> g_registry{nullptr};

Registry& registry() {
  Registry* r = g_registry.load(std::memory_order_acquire);
  if (!r) {
    auto* fresh = new Registry;
    add_builtin_exceptions(fresh);
    if (g_registry.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) r = fresh;
    else delete fresh;
  }
  return *r;
}

void add_builtin_exceptions(Registry* reg) {
  {
    auto add = [&](const std::type_info& t, ExceptionFactory f) { reg->factories[t.name()] = f; };
    add(typeid(std::exception), make_default<std::exception>);
    add(typeid(std::logic_error), make_with_what<std::logic_error>);
    add(typeid(std::invalid_argument), make_with_what<std::invalid_argument>);
    add(typeid(std::domain_error), make_with_what<std::domain_error>);
    add(typeid(std::length_error), make_with_what<std::length_error>);
    add(typeid(std::out_of_range), make_with_what<std::out_of_range>);
    add(typeid(std::runtime_error), make_with_what<std::runtime_error>);
    add(typeid(std::range_error), make_with_what<std::range_error>);
    add(typeid(std::overflow_error), make_with_what<std::overflow_error>);
    add(typeid(std::underflow_error), make_with_what<std::underflow_error>);
    add(typeid(std::bad_alloc), make_default<std::bad_alloc>);
    add(typeid(std::bad_array_new_length), make_default<std::bad_array_new_length>);
    add(typeid(std::bad_cast), make_default<std::bad_cast>);
    add(typeid(std::bad_typeid), make_default<std::bad_typeid>);
    add(typeid(std::bad_function_call), make_default<std::bad_function_call>);
    add(typeid(std::bad_optional_access), make_default<std::bad_optional_access>);
    add(typeid(std::bad_variant_access), make_default<std::bad_variant_access>);
    add(typeid(std::bad_exception), make_default<std::bad_exception>);
    // concur's own errors that carry only a message
    add(typeid(Error), make_with_what<Error>);
    add(typeid(CancelledError), make_with_what<CancelledError>);
    add(typeid(TimeoutError), make_with_what<TimeoutError>);
    add(typeid(InvalidStateError), make_with_what<InvalidStateError>);
    add(typeid(ShutdownError), make_with_what<ShutdownError>);
    add(typeid(BrokenExecutor), make_with_what<BrokenExecutor>);
    add(typeid(BrokenThreadPool), make_with_what<BrokenThreadPool>);
    add(typeid(BrokenProcessPool), make_with_what<BrokenProcessPool>);
    add(typeid(SerializationError), make_with_what<SerializationError>);
    add(typeid(EOFError), make_with_what<EOFError>);
  }
}

// Families rebuilt with a code (system_error and concur's errors with numbers).
enum class Family : std::uint8_t {
  plain = 0,
  system_error = 1,
  ios_failure = 2,
  future_error = 3,
  worker_died = 4,
  remote = 5,
  os_error = 6,
  file_not_found = 7,
  file_exists = 8,
};

const std::error_category* category_named(const std::string& name) {
  for (const std::error_category* c : {&std::generic_category(), &std::system_category(),
                                       &std::iostream_category(), &std::future_category()})
    if (name == c->name()) return c;
  return nullptr;
}

void put_string(Writer& w, std::string_view s) {
  std::uint32_t n = static_cast<std::uint32_t>(std::min<std::size_t>(s.size(), 1u << 24));
  std::byte* p = w.grow(4 + n);
  std::memcpy(p, &n, 4);
  std::memcpy(p + 4, s.data(), n);
}
std::string get_string(Reader& r) {
  std::uint32_t n;
  r.read_bytes(&n, 4);
  const std::byte* p = r.take(n);
  return std::string(reinterpret_cast<const char*>(p), n);
}

// The worker's stack where the exception was caught (the frames of the call that threw
// are gone by then: what remains shows the entry, hence the function type).
std::string catch_site_trace() {
  void* frames[48];
  int n = ::backtrace(frames, 48);
  std::string out;
  for (int i = 1; i < n; ++i) {
    std::string line = describe_code_address(reinterpret_cast<std::uintptr_t>(frames[i]));
    out += "  #" + std::to_string(i - 1) + " " + line + "\n";
    if (line.find("concur::detail::run_pool_worker") != std::string::npos ||
        line.find("concur::detail::run_call_once") != std::string::npos)
      break;
  }
  return out;
}

}  // namespace

void register_exception_factory(const char* mangled_name, ExceptionFactory factory) {
  Registry& r = registry();
  std::unique_lock lock(r.mu);
  r.factories[mangled_name] = factory;
}

void encode_current_exception(Writer& w, std::uintptr_t fn_addr, std::string_view fn_type) noexcept {
  try {
    w.set_oob_sink(nullptr);  // records are small; keep them whole in the message
    std::string mangled, display, what, category;
    std::int64_t code = 0, code2 = 0;
    Family family = Family::plain;
    try {
      throw;
    } catch (const RemoteError& e) {
      family = Family::remote;
      mangled = typeid(e).name();
      display = e.type_name();
      what = e.remote_what();
      category = e.remote_trace();
    } catch (const WorkerDiedError& e) {
      family = Family::worker_died;
      mangled = typeid(e).name();
      what = e.what();
      code = e.exit_code();
      code2 = e.signal_number();
    } catch (const OSError& e) {
      family = dynamic_cast<const FileNotFoundError*>(&e)  ? Family::file_not_found
               : dynamic_cast<const FileExistsError*>(&e) ? Family::file_exists
                                                           : Family::os_error;
      mangled = typeid(e).name();
      what = e.what();
      code = e.error_number();
    } catch (const std::future_error& e) {
      family = Family::future_error;
      mangled = typeid(e).name();
      what = e.what();
      code = e.code().value();
      category = e.code().category().name();
    } catch (const std::ios_base::failure& e) {
      family = Family::ios_failure;
      mangled = typeid(e).name();
      what = e.what();
      code = e.code().value();
      category = e.code().category().name();
    } catch (const std::system_error& e) {
      family = Family::system_error;
      mangled = typeid(e).name();
      what = e.what();
      code = e.code().value();
      category = e.code().category().name();
    } catch (const std::exception& e) {
      mangled = typeid(e).name();
      what = e.what();
    } catch (...) {
      const std::type_info* t = abi::__cxa_current_exception_type();
      mangled = t ? t->name() : "unknown";
      what = "(an exception not derived from std::exception)";
    }
    if (display.empty()) display = demangle(mangled.c_str());
    std::string trace = "in worker process " + std::to_string(::getpid()) + ", calling ";
    if (fn_addr) trace += describe_code_address(fn_addr) + " (" + std::string(fn_type) + ")";
    else trace += std::string(fn_type);
    trace += "\n" + catch_site_trace();
    *w.grow(1) = std::byte{kOutcomeException};
    *w.grow(1) = std::byte{static_cast<std::uint8_t>(family)};
    put_string(w, mangled);
    put_string(w, display);
    put_string(w, what);
    put_string(w, category);
    std::memcpy(w.grow(8), &code, 8);
    std::memcpy(w.grow(8), &code2, 8);
    put_string(w, trace);
  } catch (...) {
    // Out of memory while describing an exception: send the bare minimum.
    w.clear();
    *w.grow(1) = std::byte{kOutcomeException};
    *w.grow(1) = std::byte{0};
    for (int i = 0; i < 4; ++i) put_string(w, "");
    std::int64_t z = 0;
    std::memcpy(w.grow(8), &z, 8);
    std::memcpy(w.grow(8), &z, 8);
    put_string(w, "");
  }
}

void run_remote_call(Reader& in, Writer& out) noexcept {
  RemoteEntry entry;
  try {
    entry = reinterpret_cast<RemoteEntry>(decode_code_address(in));
  } catch (...) {
    out.clear();
    encode_current_exception(out, 0, "a remote call");
    return;
  }
  entry(in, out);
}

bool is_exception_outcome(std::span<const std::byte> outcome) noexcept {
  return !outcome.empty() && std::to_integer<std::uint8_t>(outcome[0]) == kOutcomeException;
}

std::string exception_outcome_text(std::span<const std::byte> outcome) {
  Reader r(outcome.subspan(1));
  std::exception_ptr e = decode_exception(r);
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

std::exception_ptr decode_exception(Reader& r) noexcept {
  try {
    auto family = static_cast<Family>(std::to_integer<std::uint8_t>(*r.take(1)));
    std::string mangled = get_string(r), display = get_string(r), what = get_string(r),
                category = get_string(r);
    std::int64_t code, code2;
    r.read_bytes(&code, 8);
    r.read_bytes(&code2, 8);
    std::string trace = get_string(r);
    switch (family) {
      case Family::remote: return std::make_exception_ptr(RemoteError(display, what, category));
      case Family::worker_died:
        return std::make_exception_ptr(
            WorkerDiedError(what, static_cast<int>(code), static_cast<int>(code2)));
      case Family::os_error:
        return std::make_exception_ptr(OSError(what, static_cast<int>(code)));
      case Family::file_not_found:
        return std::make_exception_ptr(FileNotFoundError(what, static_cast<int>(code)));
      case Family::file_exists:
        return std::make_exception_ptr(FileExistsError(what, static_cast<int>(code)));
      case Family::system_error:
      case Family::ios_failure:
      case Family::future_error: {
        const std::error_category* cat = category_named(category);
        if (cat && mangled == typeid(std::system_error).name()) {
          // what() is "<arg>: <message>"; the message part is added back by the constructor.
          std::error_code ec(static_cast<int>(code), *cat);
          std::string msg = ec.message();
          std::string arg = what;
          if (arg.size() >= msg.size() && arg.compare(arg.size() - msg.size(), msg.size(), msg) == 0) {
            arg.resize(arg.size() - msg.size());
            if (arg.size() >= 2 && arg.compare(arg.size() - 2, 2, ": ") == 0) arg.resize(arg.size() - 2);
            return std::make_exception_ptr(std::system_error(ec, arg));
          }
          return std::make_exception_ptr(std::system_error(ec, what));
        }
        if (cat && mangled == typeid(std::ios_base::failure).name())
          return std::make_exception_ptr(
              std::ios_base::failure(what, std::error_code(static_cast<int>(code), *cat)));
        if (cat && mangled == typeid(std::future_error).name())
          return std::make_exception_ptr(
              std::future_error(std::future_errc(static_cast<int>(code))));
        break;
      }
      case Family::plain: break;
    }
    {
      Registry& reg = registry();
      std::shared_lock lock(reg.mu);
      auto it = reg.factories.find(mangled);
      if (it != reg.factories.end()) return it->second(what);
    }
    return std::make_exception_ptr(RemoteError(display, what, trace));
  } catch (...) {
    return std::make_exception_ptr(
        SerializationError("concur: corrupt exception record from a worker process"));
  }
}

namespace {
// Built by the forking thread just before fork(): the zygote installs it instead of
// rebuilding its own. Rebuilding would call dl_iterate_phdr, whose glibc lock another
// thread may have held at fork() time (glibc does not reset it in the child).
thread_local ModuleTable* t_fork_modules = nullptr;
}  // namespace

void prepare_remote_state_for_fork() {
  if (!t_fork_modules) t_fork_modules = new ModuleTable;  // kept for later forks
  rebuild_locked(*t_fork_modules);
  self_build_id();  // computed now, for the same reason
}

void reset_remote_state_after_fork() noexcept {
  // Single-threaded here (a zygote just forked): the old objects are leaked, not touched
  // through their locks. Registered exception types are kept.
  ignore_leak(g_modules.exchange(t_fork_modules, std::memory_order_relaxed));
  t_fork_modules = nullptr;
  ignore_leak(g_symbols.exchange(nullptr, std::memory_order_relaxed));
  if (Registry* old = g_registry.load(std::memory_order_relaxed)) {
    auto* fresh = new Registry;
    fresh->factories = old->factories;
    g_registry.store(fresh, std::memory_order_relaxed);
    ignore_leak(old);
  }
}

std::exception_ptr as_serialization_error(std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const SerializationError&) {
    return e;
  } catch (const std::bad_alloc&) {
    return e;
  } catch (const std::exception& ex) {
    return std::make_exception_ptr(SerializationError(std::string("concur: ") + ex.what()));
  } catch (...) {
    return std::make_exception_ptr(SerializationError("concur: unknown error while serializing"));
  }
}

}  // namespace concur::detail
