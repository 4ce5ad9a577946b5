// Small MPI helpers shared by both sides of an MPI pool (called on MPI threads only).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace concur::detail::mpi {

// A message taken off a communicator. The buffer is not zeroed first: a 64 MiB result
// is written once, by MPI.
struct Received {
  int tag = -1;
  int source = -1;
  std::unique_ptr<std::byte[]> data;
  std::size_t size = 0;
  std::span<const std::byte> bytes() const noexcept { return {data.get(), size}; }
};

// Takes the next message matching (source, tag) if one has arrived; never blocks.
inline bool try_receive(MPI_Comm comm, int source, int tag, Received& out) {
  int flag = 0;
  MPI_Message msg;
  MPI_Status st;
  if (MPI_Improbe(source, tag, comm, &flag, &msg, &st) != MPI_SUCCESS || !flag) return false;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  out.tag = st.MPI_TAG;
  out.source = st.MPI_SOURCE;
  out.size = static_cast<std::size_t>(count);
  out.data.reset(new std::byte[out.size ? out.size : 1]);
  MPI_Mrecv(out.data.get(), count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
  return true;
}

inline std::string mpi_error_text(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, buf, &n) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, static_cast<std::size_t>(n));
}

inline std::string processor_name() {
  char buf[MPI_MAX_PROCESSOR_NAME];
  int n = 0;
  MPI_Get_processor_name(buf, &n);
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace concur::detail::mpi
