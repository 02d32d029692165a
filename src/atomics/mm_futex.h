/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_futex.h -- sleeping on a 32-bit atomic word (Linux futex).
 *
 * A thread that must wait sleeps on a word of its own (a held request's
 * outcome, the service thread's sequence number), never on a lock.  The
 * waiter re-checks the word after every return: wake-ups may be spurious,
 * and a wake that comes before the sleep is not lost because the kernel
 * compares the word with @expected atomically before sleeping.
 */
#ifndef MM_FUTEX_H
#define MM_FUTEX_H

#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mm_atomic.h"

#define MM_FOREVER_NS INT64_MAX

/* Now on CLOCK_MONOTONIC, in nanoseconds. */
static inline int64_t mm_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleep while *@word == @expected, until @deadline_ns (CLOCK_MONOTONIC,
 * absolute; MM_FOREVER_NS for no deadline).  Returns on a wake, a signal,
 * the deadline, or at once if the word already differs. */
static inline void mm_futex_wait(mm_atomic_u32 *word, uint32_t expected,
                                 int64_t deadline_ns) {
  struct timespec ts, *tsp = NULL;
  if (deadline_ns != MM_FOREVER_NS) {
    ts.tv_sec = deadline_ns / 1000000000;
    ts.tv_nsec = deadline_ns % 1000000000;
    tsp = &ts;
  }
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
  (void)syscall(SYS_futex, (uint32_t *)word,
                FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
                FUTEX_BITSET_MATCH_ANY);
}

/* Wake every thread sleeping on @word. */
static inline void mm_futex_wake_all(mm_atomic_u32 *word) {
  (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG,
                INT32_MAX, NULL, NULL, 0);
}

#endif /* MM_FUTEX_H */
