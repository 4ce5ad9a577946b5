// expect: (concur_type_is_not_serializable|is_pointer_v)<int ?\*>.*concur: a pointer cannot cross a process boundary
// A raw pointer's address means nothing in another process.
#include "concur/serialize.hpp"

int main() {
  int x = 0;
  int* p = &x;
  concur::detail::Writer w;
  concur::detail::encode(w, p);
}
