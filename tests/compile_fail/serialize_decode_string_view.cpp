// expect: (concur_cannot_decode_a_view|dependent_false)<std::basic_string_view<char.*concur: a view \(std::string_view, std::span, C string\) can be encoded but not decoded
// A decoded std::string_view would point into the message buffer.
#include <string_view>

#include "concur/serialize.hpp"

int main() {
  concur::detail::Reader r({});
  auto s = concur::detail::decode<std::string_view>(r);
  (void)s;
}
