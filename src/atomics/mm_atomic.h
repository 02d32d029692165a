/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_atomic.h -- the project's one vocabulary for atomic operations.
 *
 * Every atomic access in src/ goes through these wrappers, and every
 * wrapper names its memory order, so that a reader can see at the call
 * site what an access orders (Concurrency Kit style: mm_load_acquire_u64,
 * mm_cas_acq_rel_u64 ...).  Scalars are C11 _Atomic objects; the one
 * double-word type, mm_dword, is a 16-byte pair updated by cmpxchg16b
 * (x86-64, built with -mcx16) or the equivalent on other 64-bit targets.
 *
 * Conventions:
 *   - relaxed: no ordering; used for counters and for optimistic reads
 *     that a later CAS validates.
 *   - acquire / release: publish and consume; each non-relaxed call site
 *     says in a comment which write it publishes or which read it guards.
 *   - acq_rel CAS: the commit point of a lock-free operation.
 */
#ifndef MM_ATOMIC_H
#define MM_ATOMIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define MM_CACHE_LINE 64

/* Thread-local storage on the hot paths: the initial-exec model, so that
 * a shared library reads it as a static one does (an offset from the
 * thread pointer), without a call to __tls_get_addr. */
#define MM_THREAD_LOCAL _Thread_local __attribute__((tls_model("initial-exec")))

/* ---- 64-bit scalars ---------------------------------------------------- */

typedef _Atomic uint64_t mm_atomic_u64;

static inline uint64_t mm_load_relaxed_u64(const mm_atomic_u64 *p) {
  return atomic_load_explicit(p, memory_order_relaxed);
}

static inline uint64_t mm_load_acquire_u64(const mm_atomic_u64 *p) {
  return atomic_load_explicit(p, memory_order_acquire);
}

static inline void mm_store_relaxed_u64(mm_atomic_u64 *p, uint64_t v) {
  atomic_store_explicit(p, v, memory_order_relaxed);
}

static inline void mm_store_release_u64(mm_atomic_u64 *p, uint64_t v) {
  atomic_store_explicit(p, v, memory_order_release);
}

static inline uint64_t mm_faa_relaxed_u64(mm_atomic_u64 *p, uint64_t v) {
  return atomic_fetch_add_explicit(p, v, memory_order_relaxed);
}

static inline uint64_t mm_fas_acq_rel_u64(mm_atomic_u64 *p, uint64_t v) {
  return atomic_exchange_explicit(p, v, memory_order_acq_rel);
}

/* Strong: a failure means the value really differed, and *expected
 * receives it, read with acquire (a decision taken on a failed CAS -- "a
 * release won this page" -- sees what the winner wrote before it).  Weak
 * CAS may fail spuriously on LL/SC machines (Arm without LSE, POWER,
 * RISC-V): several callers decide on one CAS and must not. */
static inline bool mm_cas_acq_rel_u64(mm_atomic_u64 *p, uint64_t *expected,
                                      uint64_t desired) {
  return atomic_compare_exchange_strong_explicit(
      p, expected, desired, memory_order_acq_rel, memory_order_acquire);
}

/* Strong, sequentially consistent: the write side of a Dekker pair whose
 * write is a CAS (a consumer's release, a pass's reclaim of its spare). */
static inline bool mm_cas_seq_cst_u64(mm_atomic_u64 *p, uint64_t *expected,
                                      uint64_t desired) {
  return atomic_compare_exchange_strong_explicit(
      p, expected, desired, memory_order_seq_cst, memory_order_seq_cst);
}

/* Sequentially consistent: only where two threads each write one word and
 * then read the other's (a Dekker pattern: a waiter announcing itself and
 * a releaser announcing freed memory must not both miss each other). */
static inline uint64_t mm_load_seq_cst_u64(const mm_atomic_u64 *p) {
  return atomic_load_explicit(p, memory_order_seq_cst);
}

static inline uint64_t mm_faa_seq_cst_u64(mm_atomic_u64 *p, uint64_t v) {
  return atomic_fetch_add_explicit(p, v, memory_order_seq_cst);
}

static inline uint64_t mm_fas_seq_cst_u64(mm_atomic_u64 *p, uint64_t v) {
  return atomic_exchange_explicit(p, v, memory_order_seq_cst);
}

/* ---- 32-bit scalars ---------------------------------------------------- */

typedef _Atomic uint32_t mm_atomic_u32;

static inline uint32_t mm_load_relaxed_u32(const mm_atomic_u32 *p) {
  return atomic_load_explicit(p, memory_order_relaxed);
}

static inline uint32_t mm_load_acquire_u32(const mm_atomic_u32 *p) {
  return atomic_load_explicit(p, memory_order_acquire);
}

static inline uint32_t mm_load_seq_cst_u32(const mm_atomic_u32 *p) {
  return atomic_load_explicit(p, memory_order_seq_cst);
}

static inline void mm_store_relaxed_u32(mm_atomic_u32 *p, uint32_t v) {
  atomic_store_explicit(p, v, memory_order_relaxed);
}

static inline void mm_store_release_u32(mm_atomic_u32 *p, uint32_t v) {
  atomic_store_explicit(p, v, memory_order_release);
}

static inline void mm_store_seq_cst_u32(mm_atomic_u32 *p, uint32_t v) {
  atomic_store_explicit(p, v, memory_order_seq_cst);
}

static inline uint32_t mm_faa_relaxed_u32(mm_atomic_u32 *p, uint32_t v) {
  return atomic_fetch_add_explicit(p, v, memory_order_relaxed);
}

static inline uint32_t mm_faa_acq_rel_u32(mm_atomic_u32 *p, uint32_t v) {
  return atomic_fetch_add_explicit(p, v, memory_order_acq_rel);
}
static inline uint32_t mm_faa_seq_cst_u32(mm_atomic_u32 *p, uint32_t v) {
  return atomic_fetch_add_explicit(p, v, memory_order_seq_cst);
}

static inline uint32_t mm_fas_seq_cst_u32(mm_atomic_u32 *p, uint32_t v) {
  return atomic_exchange_explicit(p, v, memory_order_seq_cst);
}

static inline uint32_t mm_fas_acq_rel_u32(mm_atomic_u32 *p, uint32_t v) {
  return atomic_exchange_explicit(p, v, memory_order_acq_rel);
}

/* Strong: a failure means the value really differed. */
static inline bool mm_cas_acq_rel_u32(mm_atomic_u32 *p, uint32_t *expected,
                                      uint32_t desired) {
  return atomic_compare_exchange_strong_explicit(
      p, expected, desired, memory_order_acq_rel, memory_order_acquire);
}

/* Strong, acquire on success: taking a baton. */
static inline bool mm_cas_acquire_u32(mm_atomic_u32 *p, uint32_t *expected,
                                      uint32_t desired) {
  return atomic_compare_exchange_strong_explicit(
      p, expected, desired, memory_order_acquire, memory_order_relaxed);
}

/* ---- fences ------------------------------------------------------------ */

/* A sequentially consistent fence.  The wake-up handshake of held.c is
 * two of them: one after an event that can make a held request fit
 * (whatever orders its own writes had), one at the start of every
 * dispatch pass.  C11 7.17.3: of two seq_cst fences one precedes the
 * other in the total order S, and the side of the later one sees what the
 * side of the earlier one wrote before it; held.c's argument covers both
 * orders -- without relying on any one CPU's locked instructions being
 * full barriers. */
static inline void mm_fence_seq_cst(void) {
  atomic_thread_fence(memory_order_seq_cst);
}

/* A compiler barrier: no instruction is emitted.  The owner's half of an
 * asymmetric handshake whose other half is a membarrier(2) (tcache.c),
 * which makes every running thread execute a full barrier. */
static inline void mm_fence_compiler(void) {
  atomic_signal_fence(memory_order_seq_cst);
}

/* ---- pointers ---------------------------------------------------------- */

typedef _Atomic(void *) mm_atomic_ptr;

static inline void *mm_load_relaxed_ptr(const mm_atomic_ptr *p) {
  return atomic_load_explicit(p, memory_order_relaxed);
}

static inline void *mm_load_acquire_ptr(const mm_atomic_ptr *p) {
  return atomic_load_explicit(p, memory_order_acquire);
}

static inline void mm_store_relaxed_ptr(mm_atomic_ptr *p, void *v) {
  atomic_store_explicit(p, v, memory_order_relaxed);
}

static inline void mm_store_release_ptr(mm_atomic_ptr *p, void *v) {
  atomic_store_explicit(p, v, memory_order_release);
}

static inline void *mm_fas_acquire_ptr(mm_atomic_ptr *p, void *v) {
  return atomic_exchange_explicit(p, v, memory_order_acquire);
}

/* Weak; on failure *expected receives the current value. */
static inline bool mm_cas_release_ptr(mm_atomic_ptr *p, void **expected,
                                      void *desired) {
  return atomic_compare_exchange_weak_explicit(
      p, expected, desired, memory_order_release, memory_order_relaxed);
}

/* Weak; on failure *expected receives the current value. */
static inline bool mm_cas_acq_rel_ptr(mm_atomic_ptr *p, void **expected,
                                      void *desired) {
  return atomic_compare_exchange_weak_explicit(
      p, expected, desired, memory_order_acq_rel, memory_order_relaxed);
}

/* ---- double word ------------------------------------------------------- */

/*
 * Two 64-bit halves updated together by one 16-byte CAS.  The halves can
 * be read separately (mm_dword_load_torn_relaxed): such a read may mix two
 * moments, which is harmless before a CAS (a torn guess never matches, so
 * the CAS fails and the caller retries) but must not be acted on alone;
 * mm_dword_load_snapshot gives a value the pair really held.
 */
typedef union mm_dword {
  unsigned __int128 whole;
  uint64_t half[2];
} __attribute__((aligned(16))) mm_dword;

static inline mm_dword mm_dword_make(uint64_t lo, uint64_t hi) {
  mm_dword d;
  d.whole = ((unsigned __int128)hi << 64) | lo;
  return d;
}

static inline uint64_t mm_dword_lo(mm_dword d) { return (uint64_t)d.whole; }
static inline uint64_t mm_dword_hi(mm_dword d) {
  return (uint64_t)(d.whole >> 64);
}

/* One half, read atomically on its own. */
static inline uint64_t mm_dword_load_half_relaxed(const mm_dword *p, int half) {
  return __atomic_load_n(&p->half[half], __ATOMIC_RELAXED);
}

static inline uint64_t mm_dword_load_half_acquire(const mm_dword *p, int half) {
  return __atomic_load_n(&p->half[half], __ATOMIC_ACQUIRE);
}

/* Each half read atomically, the pair possibly torn (see above). */
static inline mm_dword mm_dword_load_torn_relaxed(const mm_dword *p) {
  uint64_t lo = __atomic_load_n(&p->half[0], __ATOMIC_RELAXED);
  uint64_t hi = __atomic_load_n(&p->half[1], __ATOMIC_RELAXED);
  return mm_dword_make(lo, hi);
}

/*
 * One 16-byte CAS.  On failure *expected receives the current value,
 * which is then a true snapshot.  GCC's __sync builtins are full
 * barriers (sequentially consistent, so at least acq_rel); they are used
 * because they inline cmpxchg16b where __atomic on 16 bytes calls
 * libatomic.  Nothing relies on the barrier being stronger than acq_rel:
 * the handshakes that need more use mm_fence_seq_cst.
 */
static inline bool mm_dword_cas_acq_rel(mm_dword *p, mm_dword *expected,
                                        mm_dword desired) {
  unsigned __int128 seen =
      __sync_val_compare_and_swap(&p->whole, expected->whole, desired.whole);
  bool ok = seen == expected->whole;
  expected->whole = seen;
  return ok;
}

/*
 * A value the pair really held at one instant: a CAS that writes back
 * what it finds.  It takes the cache line exclusive, so it is for slow
 * paths (a decline, stats), not for every operation.  @p is written
 * (with its own value) even though the logical state does not change.
 */
static inline mm_dword mm_dword_load_snapshot(mm_dword *p) {
  mm_dword guess = mm_dword_load_torn_relaxed(p);
  (void)mm_dword_cas_acq_rel(p, &guess, guess);
  return guess;
}

#endif /* MM_ATOMIC_H */
