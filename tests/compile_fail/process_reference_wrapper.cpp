// expect: concur_process_pool_argument_not_serializable<std::reference_wrapper<int> ?>.*concur: this standard type cannot cross a process boundary
// std::ref shares a variable with the task; a worker process would only change its copy.
#include <functional>

#include "concur/process_pool.hpp"

namespace {
void store(int& target, int v) { target = v; }
}  // namespace

int main() {
  concur::ProcessPoolExecutor ex(1);
  int target = 0;
  ex.submit(store, std::ref(target), 7).result();
  return target;
}
