/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * budget.c -- where a budget of 0 comes from: the limit of the process's
 * own cgroup, else the machine's physical memory.
 *
 * The process's cgroups are read from /proc/self/cgroup:
 *
 *   0::/a/b                      v2 (the unified hierarchy)
 *   4:memory:/x                  v1, the memory controller's hierarchy
 *
 * and their limits from the cgroup filesystem: for v2 memory.max and
 * memory.high (the lower), in the cgroup's directory and every one above
 * it up to the root, since a parent's limit binds its children; for v1
 * memory.limit_in_bytes, the same way.  "max", or a number of 2^62 or
 * more (v1 writes the largest page-aligned long for "no limit"), means no
 * limit; a file that is missing or unreadable says nothing.  The v2
 * hierarchy is at the root (a pure v2 system) or at root/unified (a
 * hybrid one); the v1 memory controller at root/memory.  In a container
 * with its own cgroup namespace, /proc/self/cgroup says "/" and the root
 * is the container's own cgroup: the walk then reads just its limit.
 *
 * The paths are parameters so that tests can point them at a fake tree.
 */
#include "mm_internal.h"

#include <stdatomic.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NO_LIMIT  UINT64_MAX
#define PATH_ROOM 4096

/* The limit in @dir/@file: NO_LIMIT for "max" or a huge number, and for
 * a file that is missing or says nothing we can read. */
static uint64_t read_limit(const char *dir, const char *file) {
  char path[PATH_ROOM], text[64];
  if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
    return NO_LIMIT;
  FILE *f = fopen(path, "r");
  if (!f)
    return NO_LIMIT;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  if (strncmp(text, "max", 3) == 0)
    return NO_LIMIT;
  char *end;
  unsigned long long v = strtoull(text, &end, 10);
  if (end == text || v >= MMI_MAX_TOTAL)
    return NO_LIMIT;
  return (uint64_t)v;
}

static bool is_dir_with(const char *dir, const char *file) {
  char path[PATH_ROOM];
  if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
    return false;
  return access(path, F_OK) == 0;
}

/* The smallest of @file (and @file2, if set) in @root@cg and every
 * directory above it, up to @root. */
static uint64_t walk_up(const char *root, const char *cg, const char *file,
                        const char *file2) {
  char dir[PATH_ROOM];
  size_t rootlen = strlen(root);
  if (snprintf(dir, sizeof dir, "%s%s", root, cg) >= (int)sizeof dir)
    return NO_LIMIT;
  size_t len = strlen(dir);
  while (len > rootlen && dir[len - 1] == '/')
    dir[--len] = '\0'; /* "/a/b/" reads as "/a/b" */
  uint64_t least = NO_LIMIT;
  for (;;) {
    uint64_t v = read_limit(dir, file);
    if (file2) {
      uint64_t w = read_limit(dir, file2);
      v = w < v ? w : v;
    }
    least = v < least ? v : least;
    if (len <= rootlen)
      return least;
    while (len > rootlen && dir[len - 1] != '/')
      len--; /* up one level */
    if (len > rootlen)
      len--; /* its slash */
    dir[len] = '\0';
  }
}

uint64_t mmi_budget_cgroup(const char *proc_cgroup, const char *root,
                           int *source) {
  *source = MM_BUDGET_PHYSICAL;
  FILE *f = fopen(proc_cgroup, "r");
  if (!f)
    return NO_LIMIT;
  char line[PATH_ROOM], v2root[PATH_ROOM], v1root[PATH_ROOM];
  uint64_t least = NO_LIMIT;
  /* Where the hierarchies are mounted (the usual places). */
  bool pure_v2 = is_dir_with(root, "cgroup.controllers");
  snprintf(v2root, sizeof v2root, "%s%s", root, pure_v2 ? "" : "/unified");
  snprintf(v1root, sizeof v1root, "%s/memory", root);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c1 = *c2 = '\0';
    const char *controllers = c1 + 1, *cg = c2 + 1;
    uint64_t v = NO_LIMIT;
    int from = MM_BUDGET_PHYSICAL;
    if (strcmp(line, "0") == 0 && controllers[0] == '\0') {
      v = walk_up(v2root, cg, "memory.max", "memory.high");
      from = MM_BUDGET_CGROUP_V2;
    } else {
      /* v1: "memory" among the comma-separated controllers */
      for (const char *p = controllers; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 6 && strncmp(p, "memory", 6) == 0) {
          v = walk_up(v1root, cg, "memory.limit_in_bytes", NULL);
          from = MM_BUDGET_CGROUP_V1;
          break;
        }
        p += n + (p[n] == ',');
      }
    }
    if (v < least) {
      least = v;
      *source = from;
    }
  }
  fclose(f);
  return least;
}

uint64_t mmi_budget_physical(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || size <= 0)
    return 0;
  return (uint64_t)pages * (uint64_t)size;
}

static const char *_Atomic paths[2];

void mmi_budget_set_paths(const char *proc_cgroup, const char *root) {
  atomic_store(&paths[1], root);
  atomic_store(&paths[0], proc_cgroup);
}

uint64_t mmi_budget_auto(double fraction, uint64_t page_size, int *source) {
  const char *proc = atomic_load(&paths[0]), *root = atomic_load(&paths[1]);
  uint64_t limit = mmi_budget_cgroup(proc ? proc : "/proc/self/cgroup",
                                     root ? root : "/sys/fs/cgroup", source);
  uint64_t phys = mmi_budget_physical();
  if (phys && phys < limit) {
    limit = phys;
    *source = MM_BUDGET_PHYSICAL;
  }
  if (limit == NO_LIMIT)
    return 0; /* nothing known: the caller refuses */
  double total = (double)limit * fraction;
  if (total > (double)MMI_MAX_TOTAL)
    total = (double)MMI_MAX_TOTAL;
  return (uint64_t)total / page_size * page_size;
}
