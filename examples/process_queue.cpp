// Seed 002: starting a process, and passing data back through a Queue.
//
//   Python                                   concur
//   p = Process(target=print, args=("text",))   concur::Process p(print_line, "text");
//   q = Queue(); Process(target=f, args=(q, 3))  concur::Queue<std::vector<int>> q; ...
//
// The target is a plain function; its arguments are serialized when the Process is made,
// and the queue the child receives is the same queue as the parent's.
#include <iostream>
#include <string>
#include <vector>

#include "concur/process.hpp"

void print_line(const std::string& text) { std::cout << text << std::endl; }

void f(concur::Queue<std::vector<int>> q, int x) { q.put({x * 2, x * 3}); }

int main() {
  concur::Process p(print_line, "text");
  p.start();
  p.join();

  concur::Queue<std::vector<int>> q;
  concur::Process worker(f, q, 3);
  worker.start();
  std::vector<int> got = q.get();
  std::cout << "[" << got[0] << ", " << got[1] << "]" << std::endl;
  worker.join();
  return worker.exitcode() == 0 ? 0 : 1;
}
