// concur: Python's concurrent.futures, multiprocessing and asyncio for C++20.
// The umbrella header: every public header except the Asio-based ones, one include.
//
// <concur/async.hpp> and <concur/async_sync.hpp> (coroutines on Asio) are included on
// their own: they pull in Asio, which costs more compile time than all of the rest, and
// programs without an event loop should not pay for it. <concur/mpi_pool.hpp>
// (MPIPoolExecutor) goes with the concur::mpi library, which links MPI: include it where
// you link that.
#pragma once

#include "concur/connection.hpp"
#include "concur/errors.hpp"
#include "concur/executor.hpp"
#include "concur/future.hpp"
#include "concur/pool.hpp"
#include "concur/process.hpp"
#include "concur/process_pool.hpp"
#include "concur/queue.hpp"
#include "concur/serialize.hpp"
#include "concur/shared_memory.hpp"
#include "concur/synchronize.hpp"
#include "concur/system.hpp"
#include "concur/thread_pool.hpp"
#include "concur/threading.hpp"
#include "concur/wait.hpp"
