/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_stats_print.c -- mm_stats_print: the table says what mm_get_stats
 * says, and the JSON form parses (a small strict parser below: objects,
 * strings, numbers) into the same figures under the documented names.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mm_test.h"

struct buf {
  char text[16384];
  size_t n;
  int pieces;
};

static void collect(void *ctx, const char *text) {
  struct buf *b = ctx;
  size_t len = strlen(text);
  assert_true(b->n + len < sizeof b->text);
  memcpy(b->text + b->n, text, len + 1);
  b->n += len;
  b->pieces++;
}

/* ---- a strict JSON parser, enough for one object of objects ---------- */

#define MAXF 128
struct field {
  char path[96]; /* "budget.total_bytes" */
  char value[64];
  bool string;
};

struct parser {
  const char *p;
  struct field f[MAXF];
  int n;
  bool ok;
};

static void ws(struct parser *ps) {
  while (isspace((unsigned char)*ps->p))
    ps->p++;
}

static bool expect(struct parser *ps, char c) {
  ws(ps);
  if (*ps->p != c)
    return ps->ok = false;
  ps->p++;
  return true;
}

static bool string_(struct parser *ps, char *out, size_t cap) {
  if (!expect(ps, '"'))
    return false;
  size_t k = 0;
  while (*ps->p && *ps->p != '"') {
    if (*ps->p == '\\' || (unsigned char)*ps->p < 0x20 || k + 1 >= cap)
      return ps->ok = false; /* no escapes are ever written */
    out[k++] = *ps->p++;
  }
  out[k] = '\0';
  return expect(ps, '"');
}

/* Numbers: the printer writes only non-negative integers. */
static bool number(struct parser *ps, char *out, size_t cap) {
  ws(ps);
  const char *start = ps->p;
  if (!isdigit((unsigned char)*ps->p))
    return ps->ok = false;
  while (isdigit((unsigned char)*ps->p))
    ps->p++;
  size_t len = (size_t)(ps->p - start);
  if (len + 1 > cap)
    return ps->ok = false;
  memcpy(out, start, len);
  out[len] = '\0';
  char *end;
  (void)strtod(out, &end);
  return *end == '\0' || (ps->ok = false);
}

static bool object(struct parser *ps, const char *prefix) {
  if (!expect(ps, '{'))
    return false;
  ws(ps);
  if (*ps->p == '}')
    return expect(ps, '}');
  for (;;) {
    char key[64], path[96];
    if (!string_(ps, key, sizeof key) || !expect(ps, ':'))
      return false;
    snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
    ws(ps);
    if (*ps->p == '{') {
      if (!object(ps, path))
        return false;
    } else {
      if (ps->n == MAXF)
        return ps->ok = false;
      struct field *f = &ps->f[ps->n++];
      strcpy(f->path, path);
      f->string = *ps->p == '"';
      if (!(f->string ? string_(ps, f->value, sizeof f->value)
                      : number(ps, f->value, sizeof f->value)))
        return false;
    }
    ws(ps);
    if (*ps->p == ',') {
      ps->p++;
      continue;
    }
    return expect(ps, '}');
  }
}

static const struct field *field(const struct parser *ps, const char *path) {
  for (int i = 0; i < ps->n; i++)
    if (!strcmp(ps->f[i].path, path))
      return &ps->f[i];
  fail_msg("no field %s", path);
  return NULL;
}

static uint64_t num(const struct parser *ps, const char *path) {
  const struct field *f = field(ps, path);
  assert_false(f->string);
  return strtoull(f->value, NULL, 10);
}

/* ---- the tests ---------------------------------------------------------- */

static mm_t *busy_manager(void) {
  mm_config cfg = {.total_bytes = 4 * MiB, .max_total_bytes = 8 * MiB};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  for (uint64_t id = 1; id <= 600; id++) /* storage full: evictions */
    assert_int_equal(mm_acquire_storage(mm, id, 4 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_pin_storage(mm, 600, NULL), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 1 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 2, 8 * MiB, MM_NO_WAIT),
                   MM_EINVAL); /* past max_execution_request */
  assert_int_equal(mm_external_set(mm, 7, 256 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_set_budget(mm, 6 * MiB, MM_NO_WAIT), MM_OK);
  return mm;
}

static void test_json(void **state) {
  (void)state;
  mm_t *mm = busy_manager();
  static struct buf b;
  memset(&b, 0, sizeof b);
  mm_stats_print(mm, collect, &b, "J");
  mm_stats s = mm_test_stats(mm); /* nothing moved in between */
  static struct parser ps;
  memset(&ps, 0, sizeof ps);
  ps.p = b.text;
  ps.ok = true;
  assert_true(object(&ps, ""));
  assert_true(ps.ok);
  ws(&ps);
  assert_int_equal(*ps.p, '\0'); /* one object, a newline after it */
  assert_int_equal(b.text[b.n - 1], '\n');
  assert_int_equal(num(&ps, "version"), 1);
  assert_int_equal(num(&ps, "budget.total_bytes"), 6 * MiB);
  assert_int_equal(num(&ps, "budget.max_total_bytes"), 8 * MiB);
  assert_string_equal(field(&ps, "budget.source")->value, "configured");
  assert_int_equal(num(&ps, "budget.changes"), 1);
  assert_int_equal(num(&ps, "budget.over_bytes"), 0);
  assert_int_equal(num(&ps, "execution.used_bytes"), s.execution_used_bytes);
  assert_int_equal(num(&ps, "execution.pool_bytes"), s.execution_pool_bytes);
  assert_int_equal(num(&ps, "storage.used_bytes"), s.storage_used_bytes);
  assert_int_equal(num(&ps, "storage.pinned_bytes"), 4 * KiB);
  assert_int_equal(num(&ps, "storage.pages"), s.storage_pages);
  assert_int_equal(num(&ps, "requests.granted"), s.granted);
  assert_int_equal(num(&ps, "eviction.pages"), s.evictions);
  assert_true(s.evictions > 0);
  assert_int_equal(num(&ps, "external.bytes"), 256 * KiB);
  assert_int_equal(num(&ps, "allocator.allocated_bytes"),
                   s.backing_allocated_bytes);
  num(&ps, "eviction.pages_per_s");
  num(&ps, "uptime_ms");
  mm_destroy(mm);
}

static void test_table(void **state) {
  (void)state;
  mm_t *mm = busy_manager();
  static struct buf b;
  memset(&b, 0, sizeof b);
  mm_stats_print(mm, collect, &b, NULL);
  assert_true(b.pieces > 5);
  assert_non_null(strstr(b.text, "budget: 6.0 MiB (configured; at most 8.0 "
                                 "MiB), 1 changes, 0 B past it"));
  assert_non_null(strstr(b.text, "execution"));
  assert_non_null(strstr(b.text, "storage: "));
  assert_non_null(strstr(b.text, "eviction: "));
  assert_non_null(strstr(b.text, "external: 256.0 KiB"));
  assert_non_null(strstr(b.text, "storage: 512 pages, 4.0 KiB pinned"));
  assert_non_null(strstr(b.text, "allocator"));
  assert_null(strchr(b.text, '{')); /* not the JSON form */
  /* NULL manager: nothing; NULL write: stderr (not captured here). */
  memset(&b, 0, sizeof b);
  mm_stats_print(NULL, collect, &b, "J");
  assert_int_equal(b.n, 0);
  mm_stats_print(mm, NULL, NULL, "");
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
