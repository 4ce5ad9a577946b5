// expect: (concur_process_pool_argument_not_serializable<[^>]*NotSerializable>.*concur: this argument type of a process pool task cannot be serialized|NotSerializable\) == 0. .concur: this argument type of a process pool task cannot be serialized)
// A struct with a std::string member and no cereal functions cannot be sent to a worker.
#include <string>

#include "concur/process_pool.hpp"

namespace {
struct NotSerializable {
  std::string name;
};
int use(NotSerializable n) { return static_cast<int>(n.name.size()); }
}  // namespace

int main() {
  concur::ProcessPoolExecutor ex(1);
  return ex.submit(use, NotSerializable{"x"}).result();
}
