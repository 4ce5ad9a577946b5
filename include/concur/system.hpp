// concur/system.hpp: facts about the machine that sizing decisions need.
//
// cpu_count() is the number of CPUs this process may run on: it honours the affinity mask
// (sched_getaffinity, so taskset/cpusets shrink it), which is what a pool should be sized
// by. That is Python 3.13's os.process_cpu_count(); multiprocessing.cpu_count() and
// os.cpu_count() count every CPU of the machine instead. Never less than 1.
#pragma once

#include "concur/detail/futex.hpp"

namespace concur {

// CPUs available to this process (affinity-aware, >= 1).
inline unsigned cpu_count() noexcept { return detail::online_cpus(); }

}  // namespace concur
