// Seed 002: a duplex Pipe between two processes. The child doubles what it receives until
// it gets the sentinel (None in Python, an empty std::optional here).
//
// The child's end is given away with std::move: the parent then holds no copy of it, so
// if the child died, the parent's recv() would throw concur::EOFError instead of hanging.
#include <iostream>
#include <optional>

#include "concur/process.hpp"

void f(concur::Connection conn) {
  for (;;) {
    auto x = conn.recv<std::optional<int>>();
    if (!x) return;
    conn.send(*x * 2);
  }
}

int main() {
  auto [conn_parent, conn_child] = concur::Pipe();
  concur::Process p(f, std::move(conn_child));
  p.start();

  for (int val : {3, 4, 5}) {
    conn_parent.send(std::optional<int>(val));
    std::cout << conn_parent.recv<int>() << std::endl;
  }

  conn_parent.send(std::optional<int>());
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
