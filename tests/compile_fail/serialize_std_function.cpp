// expect: (concur_type_is_not_serializable|is_denied)<std::function<int ?\(int\)> ?>.*concur: this standard type cannot cross a process boundary
// std::function holds process-local code and state.
#include <functional>

#include "concur/serialize.hpp"

int main() {
  std::function<int(int)> f = [](int x) { return x + 1; };
  concur::detail::Writer w;
  concur::detail::encode(w, f);
}
