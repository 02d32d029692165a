-- SPDX-License-Identifier: BSD-2-Clause
-- spill.sql -- statements several times bigger than the budget, with a
-- cache_size far above it: sorts, index builds, a join, DISTINCT and
-- GROUP BY on temporary b-trees, a DROP TABLE, VACUUM.  Under the adapter at a 4 MiB
-- budget SQLite must spill to temporary files and complete each one, with
-- the output of stock SQLite (which grows into whatever memory it likes).
-- Everything printed is deterministic (no random(), no clock).
--
-- The table is 200,000 rows of about 110 bytes: some 24 MB on disk,
-- six times the budget.
PRAGMA cache_size = 1000000;
PRAGMA journal_mode = delete;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t
  SELECT i, printf('%08x', (i * 2654435761) % 4294967296),
         printf('%.80c%d', char(65 + i % 26), i)
    FROM n;
SELECT 'load', count(*), sum(a), sum(length(b) + length(c)) FROM t;

-- A sort of the whole table by a column with no index.
CREATE TABLE s AS SELECT * FROM t ORDER BY b, a;
SELECT 'sorted', count(*),
       (SELECT count(*) FROM s x JOIN s y ON y.rowid = x.rowid + 1
         WHERE y.b < x.b OR (y.b = x.b AND y.a < x.a)),
       (SELECT b FROM s WHERE rowid = 1), (SELECT b FROM s WHERE rowid = 200000)
  FROM s;

-- Index builds (the sorter again), one of them on the long column.
CREATE INDEX t_b ON t(b);
CREATE INDEX t_c ON t(c, a);
SELECT 'index', count(*), min(b), max(b) FROM t INDEXED BY t_b WHERE b > '8';

-- A join the planner serves with an automatic index on s(a), grouped.
SELECT 'join', t.a % 7 AS g, count(*), sum(s.a), max(s.c)
  FROM t JOIN s ON s.a = t.a
 GROUP BY g ORDER BY g;

-- DISTINCT and GROUP BY over everything: temporary b-trees.
SELECT 'distinct', count(*) FROM (SELECT DISTINCT substr(c, 1, 70) || b FROM t);
SELECT 'groups', count(*), sum(n) FROM (SELECT b, count(*) AS n FROM s GROUP BY b);

-- A sort the result streams from, past the middle.
SELECT 'offset', a, b FROM t ORDER BY c DESC, b LIMIT 2 OFFSET 123456;

-- Free a table of six times the budget (every freed page is rewritten:
-- Debian builds SQLite with secure_delete), rewrite the database, check
-- everything.  VACUUM runs with a cache_size within the budget: its copy
-- inherits cache_size, and with one far above the budget it fails (see
-- the README).
DROP TABLE s;
PRAGMA cache_size = -2000;
VACUUM;
PRAGMA cache_size = 1000000;
PRAGMA integrity_check;
SELECT 'after', count(*), sum(a) FROM t;
