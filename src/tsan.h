/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tsan.h -- telling ThreadSanitizer about orderings it cannot see.
 *
 * liburcu and Concurrency Kit are not built with TSan (ck's atomics are
 * inline assembly), so TSan does not see the orderings they provide.
 * Where such a library hands one of our objects from one thread to
 * another, the publishing side says MMI_TSAN_RELEASE(obj) and the
 * receiving side MMI_TSAN_ACQUIRE(obj): exactly the order the library
 * guarantees, no more.  Outside TSan builds both are nothing.
 */
#ifndef MM_TSAN_H
#define MM_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define MMI_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MMI_TSAN 1
#endif
#endif

#ifdef MMI_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define MMI_TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#define MMI_TSAN_RELEASE(p) __tsan_release((void *)(p))
#else
#define MMI_TSAN_ACQUIRE(p) ((void)0)
#define MMI_TSAN_RELEASE(p) ((void)0)
#endif

#endif /* MM_TSAN_H */
