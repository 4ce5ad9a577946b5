// expect: (concur_type_is_not_serializable|has_specific_reason)<Unserializable>.*concur: this type cannot cross a process boundary. give it a cereal serialize\(\) function or make it trivially copyable
// The error names the element type at fault, not just the vector holding it.
#include <mutex>
#include <vector>

#include "concur/serialize.hpp"

struct Unserializable {
  std::mutex m;
  int id = 0;
};

int main() {
  concur::detail::Reader r({});
  auto v = concur::detail::decode<std::vector<Unserializable>>(r);
  (void)v;
}
