#include <cstdio>
#include <exception>
#include <typeinfo>

#include "concur/detail/demangle.hpp"
#include "concur/future.hpp"

namespace concur::detail {

void report_callback_exception(std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "concur: exception calling callback for future: %s: %s\n",
                 demangle(typeid(ex).name()).c_str(), ex.what());
  } catch (...) {
    std::fprintf(stderr, "concur: exception calling callback for future: (non-standard exception)\n");
  }
}

}  // namespace concur::detail
