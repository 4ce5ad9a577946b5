// expect: (concur_process_pool_argument_not_serializable<[^>]*Opaque>.*concur: this argument type of a process pool task cannot be serialized|Opaque\) == 0. .concur: this argument type of a process pool task cannot be serialized)
// map() checks its element types like submit() does.
#include <mutex>
#include <vector>

#include "concur/process_pool.hpp"

namespace {
struct Opaque {
  std::vector<int> v;
  Opaque() = default;
  Opaque(const Opaque&) {}
};
int size_of(Opaque o) { return static_cast<int>(o.v.size()); }
}  // namespace

int main() {
  concur::ProcessPoolExecutor ex(1);
  std::vector<Opaque> in(3);
  int n = 0;
  for (int s : ex.map(size_of, in)) n += s;
  return n;
}
