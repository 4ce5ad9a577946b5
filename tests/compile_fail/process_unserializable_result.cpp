// expect: (concur_process_pool_result_not_serializable<[^>]*Handle>.*concur: the result type of this process pool task cannot be serialized|Handle\) == 0. .concur: the result type of this process pool task cannot be serialized)
// A result holding process-local state cannot come back from a worker.
#include <memory>

#include "concur/process_pool.hpp"

namespace {
struct Handle {
  std::unique_ptr<int> p;
};
Handle make() { return Handle{std::make_unique<int>(1)}; }
}  // namespace

int main() {
  concur::ProcessPoolExecutor ex(1);
  return *ex.submit(make).result().p;
}
