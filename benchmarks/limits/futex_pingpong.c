/*
 * The machine's limit for one hop: an 8-byte message round trip between two
 * processes through a futex word in shared memory. No spinning: each side
 * sleeps in FUTEX_WAIT until the other wakes it, which is what a hop between
 * an idle worker and an idle scheduler costs at the least.
 *
 *   double tf_futex_roundtrip_ns(int iterations)  -> mean ns per round trip
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct channel {
  volatile uint32_t turn; /* futex word: 0 = parent's message, 1 = child's */
  volatile uint64_t payload;
};

static void wait_turn(volatile uint32_t* w, uint32_t want) {
  uint32_t v;
  while ((v = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != want)
    syscall(SYS_futex, (uint32_t*)w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void give_turn(volatile uint32_t* w, uint32_t to) {
  __atomic_store_n(w, to, __ATOMIC_RELEASE);
  syscall(SYS_futex, (uint32_t*)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

double tf_futex_roundtrip_ns(int iterations) {
  struct channel* ch = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ch == MAP_FAILED) return -1;
  ch->turn = 2; /* nobody's turn yet */
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < iterations; ++i) {
      wait_turn(&ch->turn, 0);
      ch->payload += 1; /* the 8-byte reply */
      give_turn(&ch->turn, 1);
    }
    _exit(0);
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < iterations; ++i) {
    ch->payload = (uint64_t)i; /* the 8-byte message */
    give_turn(&ch->turn, 0);
    wait_turn(&ch->turn, 1);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  int status;
  waitpid(pid, &status, 0);
  munmap(ch, 4096);
  return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / iterations;
}
