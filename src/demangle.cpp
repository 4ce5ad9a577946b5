#include "concur/detail/demangle.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace concur::detail {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                            std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

}  // namespace concur::detail
