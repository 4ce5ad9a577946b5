// concur: Python's concurrent.futures, multiprocessing and asyncio for C++20.
// The umbrella header: everything public, one include.
#pragma once

#include "concur/errors.hpp"
#include "concur/executor.hpp"
#include "concur/future.hpp"
#include "concur/pool.hpp"
#include "concur/shared_memory.hpp"
#include "concur/synchronize.hpp"
#include "concur/system.hpp"
#include "concur/thread_pool.hpp"
#include "concur/threading.hpp"
#include "concur/wait.hpp"
