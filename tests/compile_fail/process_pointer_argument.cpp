// expect: concur_process_pool_argument_not_serializable<int ?\*>.*concur: a pointer cannot cross a process boundary
// An address means nothing in another process.
#include "concur/process_pool.hpp"

namespace {
int deref(int* p) { return *p; }
}  // namespace

int main() {
  concur::ProcessPoolExecutor ex(1);
  int v = 1;
  return ex.submit(deref, &v).result();
}
