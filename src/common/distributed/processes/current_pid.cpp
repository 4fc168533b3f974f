#include "common/distributed/processes/current_pid.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>

namespace tierflow {

namespace {
std::atomic<int> g_pid{0};

void refresh() { g_pid.store(static_cast<int>(getpid()), std::memory_order_relaxed); }

struct Init {
  Init() {
    refresh();
    pthread_atfork(nullptr, nullptr, &refresh);
  }
} g_init;
}  // namespace

int current_pid() {
  int p = g_pid.load(std::memory_order_relaxed);
  return p != 0 ? p : static_cast<int>(getpid());
}

}  // namespace tierflow
