// expect: (concur_type_is_not_serializable|has_specific_reason)<Unserializable>.*concur: this type cannot cross a process boundary. give it a cereal serialize\(\) function or make it trivially copyable
// A struct with a std::string member and no serialize(): not trivially copyable, no cereal
// functions, so it cannot be sent.
#include <string>

#include "concur/serialize.hpp"

struct Unserializable {
  std::string name;
  int id;
};

int main() {
  concur::detail::Writer w;
  concur::detail::encode(w, Unserializable{"x", 1});
}
