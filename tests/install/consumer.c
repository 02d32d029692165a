/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * consumer.c -- a program that knows the manager only through its
 * installed header and pkg-config / find_package.  It calls every public
 * function and checks the documented results; exit status 0 means all
 * held.
 */
#include <memory_manager.h>

#include <stdio.h>
#include <string.h>

static int failures;

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "consumer.c:%d: expected %s\n", __LINE__, #cond);        \
      failures++;                                                              \
    }                                                                          \
  } while (0)

int main(void) {
  mm_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.total_bytes = (size_t)64 << 20;

  mm_t *mm = NULL;
  EXPECT(mm_create(NULL, &mm) == MM_EINVAL);
  EXPECT(mm_create(&cfg, &mm) == MM_OK && mm != NULL);
  if (!mm)
    return 1;

  EXPECT(strcmp(mm_strerror(MM_OK), mm_strerror(MM_ENOMEM)) != 0);
  EXPECT(mm_strerror(MM_EINPROGRESS) != NULL);

  /* execution */
  EXPECT(mm_acquire_execution(mm, 1, 4096, MM_NO_WAIT) == MM_OK);
  EXPECT(mm_acquire_execution(mm, 1, 0, MM_NO_WAIT) == MM_EINVAL);
  EXPECT(mm_execution_held(mm, 1) == 4096);
  EXPECT(mm_release_execution(mm, 1, 5000) == MM_EINVAL);
  EXPECT(mm_release_execution(mm, 1, 96) == MM_OK);
  EXPECT(mm_release_all_execution(mm, 1) == 4000);
  EXPECT(mm_execution_held(mm, 1) == 0);

  /* storage */
  void *data = (void *)&cfg;
  EXPECT(mm_acquire_storage(mm, 9, 100, MM_NO_WAIT) == MM_OK);
  EXPECT(mm_acquire_storage(mm, 9, 100, MM_NO_WAIT) == MM_EEXIST);
  EXPECT(mm_pin_storage(mm, 9, &data) == MM_OK && data == NULL);
  EXPECT(mm_release_storage(mm, 9) == MM_EBUSY);
  EXPECT(mm_unpin_storage(mm, 9) == MM_OK);
  EXPECT(mm_unpin_storage(mm, 9) == MM_EINVAL);
  EXPECT(mm_release_storage(mm, 9) == MM_OK);
  EXPECT(mm_release_storage(mm, 9) == MM_ENOENT);

  /* borrowing, seen through the stats */
  for (uint64_t id = 10; id < 14; id++)
    EXPECT(mm_acquire_execution(mm, id, (size_t)8 << 20, MM_NO_WAIT) == MM_OK);
  EXPECT(mm_acquire_execution(mm, 14, 1 << 20, MM_NO_WAIT) == MM_OK);
  mm_stats s;
  mm_get_stats(mm, &s);
  EXPECT(s.execution_borrowed_bytes == 1 << 20);
  EXPECT(s.execution_pool_bytes + s.storage_pool_bytes == s.total_bytes);
  EXPECT(mm_release_all_execution(mm, 14) == 1 << 20);
  mm_get_stats(mm, &s);
  EXPECT(s.execution_borrowed_bytes == 0);
  EXPECT(s.storage_pool_bytes == (size_t)32 << 20);

  mm_destroy(mm);
  if (failures == 0)
    printf("consumer: every call answered as documented\n");
  return failures != 0;
}
