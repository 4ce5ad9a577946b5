// Small system facts the process engine needs: the executable's identity, memory size,
// signal names, an integrity hash.
#include <elf.h>
#include <link.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "process/internal.hpp"

namespace concur::detail {

namespace {

int find_build_id(dl_phdr_info* info, std::size_t, void* out) {
  auto* id = static_cast<std::vector<std::byte>*>(out);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
    const auto* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) n;
      std::memcpy(&n, p, sizeof n);
      const unsigned char* name = p + sizeof n;
      const unsigned char* desc = name + ((n.n_namesz + 3) & ~3u);
      if (desc + n.n_descsz > end) break;
      if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        id->assign(reinterpret_cast<const std::byte*>(desc),
                   reinterpret_cast<const std::byte*>(desc + n.n_descsz));
        return 1;
      }
      p = desc + ((n.n_descsz + 3) & ~3u);
    }
  }
  return 1;  // only the first object (the executable) matters
}

}  // namespace

const std::vector<std::byte>& self_build_id() {
  static const std::vector<std::byte> id = [] {
    std::vector<std::byte> out;
    dl_iterate_phdr(find_build_id, &out);
    if (out.empty()) {
      // No build-id note (linked with --build-id=none): identify the file instead.
      struct stat st {};
      ::stat("/proc/self/exe", &st);
      std::uint64_t v[5] = {static_cast<std::uint64_t>(st.st_dev),
                            static_cast<std::uint64_t>(st.st_ino),
                            static_cast<std::uint64_t>(st.st_size),
                            static_cast<std::uint64_t>(st.st_mtim.tv_sec),
                            static_cast<std::uint64_t>(st.st_mtim.tv_nsec)};
      out.resize(sizeof v);
      std::memcpy(out.data(), v, sizeof v);
    }
    return out;
  }();
  return id;
}

std::size_t physical_memory() noexcept {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return std::size_t{4} << 30;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page);
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  if (abbrev) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

void emit_diagnostic(const char* what) noexcept {
  ssize_t rc = ::write(2, what, std::strlen(what));
  static_cast<void>(rc);
}

std::uint64_t hash_bytes(const void* data, std::size_t n, std::uint64_t seed) noexcept {
  // A multiply-xorshift mix over 8-byte words: fast, and enough to catch corruption (it
  // is not a defence against a malicious peer, which could write any memory anyway).
  constexpr std::uint64_t k = 0x9fb21c651e98df25ull;
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = seed ^ (n * k);
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h ^= w * k;
    h = (h << 31 | h >> 33) * k;
    p += 8;
    n -= 8;
  }
  std::uint64_t tail = 0;
  if (n) std::memcpy(&tail, p, n);
  h ^= (tail + n) * k;
  h ^= h >> 29;
  h *= k;
  h ^= h >> 32;
  return h;
}

}  // namespace concur::detail
