/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_budget.c -- a budget of 0: the process's cgroup limit, read from
 * a fake cgroup tree (v2, v1, both, none), else physical memory.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm_test.h"

#include "mm_internal.h" /* mmi_budget_cgroup */

static char root[PATH_MAX];

static void put(const char *rel, const char *text) {
  char path[PATH_MAX + 256];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  /* make every directory on the way */
  for (char *p = path + strlen(root) + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void fresh_tree(void) {
  char cmd[PATH_MAX + 16];
  if (root[0]) {
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
  }
  strcpy(root, "/tmp/mm-budget-XXXXXX");
  assert_non_null(mkdtemp(root));
}

static uint64_t probe(int *source) {
  char proc[PATH_MAX + 32], fs[PATH_MAX + 32];
  snprintf(proc, sizeof proc, "%s/proc-self-cgroup", root);
  snprintf(fs, sizeof fs, "%s/fs", root);
  return mmi_budget_cgroup(proc, fs, source);
}

/* v2: the lowest of memory.max and memory.high, in the cgroup and every
 * one above it; "max" is no limit. */
static void test_v2(void **state) {
  (void)state;
  fresh_tree();
  put("proc-self-cgroup", "0::/a/b\n");
  put("fs/cgroup.controllers", "cpu memory\n");
  put("fs/a/memory.max", "1073741824\n");
  put("fs/a/b/memory.max", "max\n");
  put("fs/a/b/memory.high", "536870912\n");
  int source = -1;
  assert_int_equal(probe(&source), 512 * MiB);
  assert_int_equal(source, MM_BUDGET_CGROUP_V2);
  /* A parent's limit binds: lower than the child's. */
  put("fs/memory.max", "268435456\n");
  assert_int_equal(probe(&source), 256 * MiB);
  /* No limit anywhere. */
  fresh_tree();
  put("proc-self-cgroup", "0::/a\n");
  put("fs/cgroup.controllers", "memory\n");
  put("fs/a/memory.max", "max\n");
  assert_int_equal(probe(&source), UINT64_MAX);
  assert_int_equal(source, MM_BUDGET_PHYSICAL);
}

/* v1: memory.limit_in_bytes under the memory controller's hierarchy; the
 * largest page-aligned long is "no limit". */
static void test_v1(void **state) {
  (void)state;
  fresh_tree();
  put("proc-self-cgroup",
      "9:pids:/x\n4:cpuacct,memory:/x/y\n1:name=systemd:/\n0::/\n");
  put("fs/memory/x/y/memory.limit_in_bytes", "9223372036854771712\n");
  put("fs/memory/x/memory.limit_in_bytes", "3221225472\n");
  put("fs/memory/memory.limit_in_bytes", "9223372036854771712\n");
  int source = -1;
  assert_int_equal(probe(&source), 3 * GiB);
  assert_int_equal(source, MM_BUDGET_CGROUP_V1);
  /* Hybrid: a v2 limit too; the lower one wins. */
  put("fs/unified/memory.max", "2147483648\n");
  assert_int_equal(probe(&source), 2 * GiB);
  assert_int_equal(source, MM_BUDGET_CGROUP_V2);
}

/* Nothing to read: no limit. */
static void test_none(void **state) {
  (void)state;
  fresh_tree();
  int source = -1;
  assert_int_equal(probe(&source), UINT64_MAX); /* no /proc file */
  put("proc-self-cgroup", "0::/gone\n");
  assert_int_equal(probe(&source), UINT64_MAX); /* no cgroup fs */
  put("fs/cgroup.controllers", "memory\n");
  put("fs/memory.max", "garbage\n");
  assert_int_equal(probe(&source), UINT64_MAX);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  assert_int_equal(system(cmd), 0);
}

/* mm_create with total_bytes 0: a fraction of what the process may use,
 * and the stats say where it came from. */
static void test_create_auto(void **state) {
  (void)state;
  mm_config cfg = {.auto_fraction = 0.001};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  mm_stats s = mm_test_stats(mm);
  int source;
  uint64_t limit =
      mmi_budget_cgroup("/proc/self/cgroup", "/sys/fs/cgroup", &source);
  uint64_t phys = mmi_budget_physical();
  uint64_t want = phys && phys < limit ? phys : limit;
  if (phys && phys < limit)
    source = MM_BUDGET_PHYSICAL;
  want = (uint64_t)((double)want * 0.001) / 4096 * 4096;
  assert_int_equal(s.total_bytes, want);
  assert_int_equal(s.budget_source, source);
  assert_true(s.budget_source != MM_BUDGET_CONFIGURED);
  mm_test_check_stats(&s, (s.total_bytes / 2) / 4096 * 4096, 0);
  mm_destroy(mm);
  /* A configured budget says so; a bad fraction is refused. */
  cfg = (mm_config){.total_bytes = 1 * MiB};
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_int_equal(mm_test_stats(mm).budget_source, MM_BUDGET_CONFIGURED);
  mm_destroy(mm);
  for (int i = 0; i < 3; i++) {
    static const double bad[] = {-0.5, 1.5, 2};
    cfg = (mm_config){.auto_fraction = bad[i]};
    mm = (mm_t *)&cfg;
    assert_int_equal(mm_create(&cfg, &mm), MM_EINVAL);
    assert_ptr_equal(mm, (mm_t *)&cfg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v2),
      cmocka_unit_test(test_v1),
      cmocka_unit_test(test_none),
      cmocka_unit_test(test_create_auto),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
