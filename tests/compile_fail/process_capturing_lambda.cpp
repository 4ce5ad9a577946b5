// expect: (concur_process_pool_callable_not_portable<.*lambda.*concur: a process pool runs a function pointer or a lambda without captures|lambda at [^)]*\)\) == 0. .concur: a process pool runs a function pointer or a lambda without captures)
// A lambda with captures cannot be re-created in the worker: pass the state as arguments.
#include "concur/process_pool.hpp"

int main() {
  concur::ProcessPoolExecutor ex(1);
  int base = 40;
  return ex.submit([base](int x) { return base + x; }, 2).result();
}
