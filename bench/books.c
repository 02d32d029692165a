/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * books.c -- what one acquire+release pair of book-keeping costs on this
 * machine, by primitive, side by side in one run, one thread.
 *
 *   mm-bench-books [pairs]   (default 20,000,000; median of 7 rounds)
 *
 * The designs a consumer's books could have, reduced to their memory
 * operations (no policy, no checks the designs share):
 *   xadd    one shared counter, fetch-and-add and fetch-and-sub (the
 *           bench/alloc.c "atomic" baseline): the floor of a counter;
 *   cas     one word (held and spare), a load and a compare-and-swap per
 *           call: the books as built (src/consumer.c);
 *   stock   a per-thread stock of the consumer: held and avail in one
 *           word written with plain loads and stores, inside the
 *           per-thread cache's drain handshake (a plain store of active,
 *           a compiler barrier, a load of drain on entry; a release store
 *           and a load of drain on exit: src/tcache.h), found by a scan
 *           of four slots -- what a per-CPU or per-thread "stock" (Linux
 *           memcg, Velox's leaf reservations) costs the owner.
 * The figure decides whether the stock pays: it does where a locked
 * read-modify-write costs much more than a plain store-to-load chain.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SPARE_BITS 22
#define SPARE_MASK ((UINT64_C(1) << SPARE_BITS) - 1)

struct record {
  _Atomic uint32_t active, drain;
  char other[200]; /* the cache's stacks and counters */
  struct {
    _Atomic(void *) c;
    _Atomic uint64_t w; /* held << SPARE_BITS | avail */
  } stock[4];
};

static struct record rec;
static _Atomic uint64_t books, counter;

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

#define ROUNDS 7

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

enum design { XADD, CAS, STOCK };
static const char *name[] = {"xadd", "cas", "stock"};

/* One call: +@b held (@sign 1) or -@b (@sign -1). */
static __attribute__((noinline)) int call(enum design d, void *c, uint64_t b,
                                          int sign) {
  uint64_t delta = sign > 0 ? (b << SPARE_BITS) - b : b - (b << SPARE_BITS);
  switch (d) {
  case XADD:
    atomic_fetch_add_explicit(&counter, sign > 0 ? b : -b,
                              memory_order_acq_rel);
    return 1;
  case CAS: {
    uint64_t w = atomic_load_explicit(&books, memory_order_relaxed);
    if (sign > 0 ? (w & SPARE_MASK) < b : (w >> SPARE_BITS) < b)
      return 0;
    return atomic_compare_exchange_strong_explicit(
        &books, &w, w + delta, memory_order_acq_rel, memory_order_relaxed);
  }
  case STOCK: {
    struct record *r = &rec;
    atomic_store_explicit(&r->active, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->drain, memory_order_acquire))
      return 0;
    int ok = 0;
    for (int i = 0; i < 4; i++) {
      if (atomic_load_explicit(&r->stock[i].c, memory_order_relaxed) != c)
        continue;
      uint64_t w = atomic_load_explicit(&r->stock[i].w, memory_order_relaxed);
      if (sign > 0 ? (w & SPARE_MASK) >= b : (w >> SPARE_BITS) >= b) {
        atomic_store_explicit(&r->stock[i].w, w + delta, memory_order_relaxed);
        ok = 1;
      }
      break;
    }
    atomic_store_explicit(&r->active, 0, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->drain, memory_order_relaxed))
      return 0;
    return ok;
  }
  }
  return 0;
}

int main(int argc, char **argv) {
  long pairs = argc > 1 ? atol(argv[1]) : 20000000;
  void *c = &books;
  atomic_store(&rec.stock[2].c, c);
  atomic_store(&rec.stock[2].w, 1u << 20);
  atomic_store(&books, 1u << 20);
  double ns[3][ROUNDS], med[3];
  for (int round = 0; round < ROUNDS; round++)
    for (int d = XADD; d <= STOCK; d++) { /* taking turns in each round */
      double t = now_ns();
      for (long i = 0; i < pairs; i++) {
        call((enum design)d, c, 4096, 1);
        call((enum design)d, c, 4096, -1);
      }
      ns[d][round] = (now_ns() - t) / (double)pairs;
    }
  printf("design  ns/pair (median of %d)  pairs/s vs xadd\n", ROUNDS);
  for (int d = XADD; d <= STOCK; d++) {
    qsort(ns[d], ROUNDS, sizeof ns[d][0], by_value);
    med[d] = ns[d][ROUNDS / 2];
    printf("%-6s  %7.2f  %.2f\n", name[d], med[d], med[XADD] / med[d]);
  }
  return 0;
}
