// current_pid(): this process's pid, cached and refreshed in every forked
// child (pthread_atfork), so the checks "am I the process that owns this?"
// that guard arenas and engines against forked copies cost a load, not a
// system call.
#pragma once

namespace tierflow {

int current_pid();

}  // namespace tierflow
