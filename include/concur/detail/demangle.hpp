// Readable type names for error messages.
#pragma once

#include <string>
#include <typeinfo>

namespace concur::detail {

// "std::vector<int, std::allocator<int> >" for typeid(std::vector<int>).name().
std::string demangle(const char* mangled);

template <class T>
std::string type_name() {
  return demangle(typeid(T).name());
}

}  // namespace concur::detail
