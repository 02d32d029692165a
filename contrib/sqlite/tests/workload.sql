-- SPDX-License-Identifier: BSD-2-Clause
-- workload.sql -- deterministic stress workload for a custom SQLite page cache
-- and memory allocator.
--
-- Usage:  sqlite3 FRESH.db < workload.sql > out.txt
-- The same script is run through the stock sqlite3 shell and through a build
-- that uses the replacement page cache / allocator; the two outputs must be
-- byte-identical.  Everything printed is deterministic: all data comes from
-- arithmetic on recursive-CTE counters (no random(), no clock), every query
-- that prints rows has an ORDER BY giving a total order or is an aggregate,
-- and nothing reports page/cache/memory counts or file sizes.
--
-- The database file is about 55 MB after the load, peaks at about 66 MB before
-- VACUUM and is about 47 MB afterwards, so a 2-8 MiB page cache is overflowed
-- and refilled many times (the runner sets the cache budget: the sqlite3
-- shell's default cache_size is -2000, about 2 MB; large transactions also
-- spill dirty pages).  Stock sqlite3 3.40 takes roughly
-- 15-20 s on a 2-core machine; most of it is I/O between the cache and the
-- OS (millions of 4 KB reads/writes), which is the point of the exercise.
--
-- Output: about 100 lines; "delete" from PRAGMA journal_mode, two "ok"
-- lines from integrity_check, and aggregate checksums after every phase.
--
-- Phases:
--   0. Setup: page size, rollback journal (prints "delete").
--   1. Bulk load in transactions: customers (50k), orders (200k),
--      line_items (100k, 90-140 byte text payloads), docs (600 rows of
--      3-9 KB text -> overflow page chains).  Large transactions force the
--      pager to spill dirty pages out of the cache mid-transaction.
--      Per-table checksums are printed after the load.
--   2. Secondary indexes, including on text columns.
--   3. Reads: join of the big tables with GROUP BY, a full sort of the
--      largest table by a non-indexed expression with LIMIT/OFFSET from the
--      middle and the end (sort larger than memory), a window-function query,
--      index-driven lookups and range scans.
--   4. Transaction rollback and savepoints (pages restored from the journal
--      must match the pre-transaction state).
--   5. UPDATE about a third of the rows (text grows/shrinks, indexed columns
--      change) then integrity_check.
--   6. DELETE about a fifth of the rows (freelist growth, b-tree rebalancing).
--   7. CREATE TABLE AS SELECT, DROP INDEX and re-create it, DROP TABLE.
--   8. VACUUM (database rebuilt through the cache), integrity_check and
--      final checksums which must match the pre-VACUUM ones.

PRAGMA page_size=4096;
PRAGMA journal_mode=DELETE;

------------------------------------------------------------------------------
-- Phase 1: bulk load
------------------------------------------------------------------------------
CREATE TABLE customers(
  id      INTEGER PRIMARY KEY,
  name    TEXT NOT NULL,
  email   TEXT NOT NULL,
  region  INTEGER NOT NULL,
  balance INTEGER NOT NULL
);
CREATE TABLE orders(
  id      INTEGER PRIMARY KEY,
  cust_id INTEGER NOT NULL,
  amount  INTEGER NOT NULL,
  status  TEXT NOT NULL,
  note    TEXT NOT NULL
);
CREATE TABLE line_items(
  id       INTEGER PRIMARY KEY,
  order_id INTEGER NOT NULL,
  sku      TEXT NOT NULL,
  qty      INTEGER NOT NULL,
  price    INTEGER NOT NULL,
  payload  TEXT NOT NULL
);
CREATE TABLE docs(
  id    INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  body  TEXT NOT NULL
);

BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<50000)
INSERT INTO customers(id,name,email,region,balance)
SELECT x,
       substr('alphabravocharliedeltaechofoxtrotgolfhotelindiajuliet',
              ((x*2654435761)%1000003)%10*5+1, 5)
         || printf('-%05d-%06x', (x*7919)%100000, (x*2654435761)%16777216),
       printf('user%06d@%s.example', (x*48271)%1000003,
              substr('northsoutheast_west_', (x%4)*5+1, 5)),
       (x*2654435761)%1000003%17,
       (x*2654435761)%1000003 - 500000
FROM c;
COMMIT;

BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<200000)
INSERT INTO orders(id,cust_id,amount,status,note)
SELECT x,
       1 + (x*2654435761)%1000003%50000,
       (x*48271)%1000003%100000,
       substr('NEW PAIDSHIPDONEVOID', ((x*69069)%1000003%5)*4+1, 4),
       printf('%06d:%08x:%08x', x,
              (x*2654435761)%4294967296, ((x*40503+7)%4294967296*1103515245)%4294967296)
FROM c;
COMMIT;

BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<100000)
INSERT INTO line_items(id,order_id,sku,qty,price,payload)
SELECT x,
       1 + (x*2654435761)%1000003%200000,
       printf('SKU-%s-%04d',
              substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ', (x*31)%26+1, 1),
              (x*69069)%1000003%5000),
       1 + x%9,
       (x*48271)%1000003%10000,
       substr(printf('%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x',
                     (x*2654435761)%4294967296, ((x+1)*2246822519)%4294967296,
                     ((x+2)*3266489917)%4294967296, ((x+3)*668265263)%4294967296,
                     ((x+4)*374761393)%4294967296, ((x+5)*2654435761)%4294967296,
                     ((x+6)*2246822519)%4294967296, ((x+7)*3266489917)%4294967296,
                     ((x+8)*668265263)%4294967296, ((x+9)*374761393)%4294967296,
                     ((x+10)*2654435761)%4294967296, ((x+11)*2246822519)%4294967296,
                     ((x+12)*3266489917)%4294967296, ((x+13)*668265263)%4294967296,
                     ((x+14)*374761393)%4294967296, ((x+15)*2654435761)%4294967296,
                     ((x+16)*2246822519)%4294967296, ((x+17)*3266489917)%4294967296,
                     ((x+18)*668265263)%4294967296),
              1 + x%7, 90 + (x*2654435761)%51)
FROM c;
COMMIT;

-- Large rows spanning overflow pages (3-9 KB each).
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<600)
INSERT INTO docs(id,title,body)
SELECT x,
       printf('doc-%04d-%08x', x, (x*2654435761)%4294967296),
       substr(replace(hex(zeroblob(1000)), '00',
                      printf('%08x.', (x*2654435761)%4294967296 + 1)),
              1, 3000 + (x*48271)%6000)
         || printf('<end %d>', x)
FROM c;
COMMIT;

SELECT 'load', count(*), sum(region), sum(balance), sum(length(name)+length(email)),
       min(name), max(email) FROM customers;
SELECT 'load', count(*), sum(cust_id), sum(amount), sum(length(note)),
       min(note), max(status) FROM orders;
SELECT 'load', count(*), sum(order_id), sum(qty*price), sum(length(payload)),
       min(payload), max(sku) FROM line_items;
SELECT 'load', count(*), sum(length(body)), sum(unicode(substr(body, 1 + id*37 % length(body), 1))),
       min(title), max(substr(body, -12)) FROM docs;

------------------------------------------------------------------------------
-- Phase 2: secondary indexes (integer and text keys)
------------------------------------------------------------------------------
CREATE INDEX cust_name   ON customers(name);
CREATE UNIQUE INDEX cust_email ON customers(email, id);
CREATE INDEX ord_cust    ON orders(cust_id, amount);
CREATE INDEX ord_status  ON orders(status, amount);
CREATE INDEX li_order    ON line_items(order_id);
CREATE INDEX li_sku      ON line_items(sku, price);
CREATE INDEX li_payload  ON line_items(payload);
CREATE INDEX docs_title  ON docs(title);

------------------------------------------------------------------------------
-- Phase 3: reads
------------------------------------------------------------------------------
-- Join of the big tables with GROUP BY (whole-table scans of all three).
SELECT c.region, count(DISTINCT o.id), count(li.id), sum(li.qty*li.price),
       sum(length(li.payload)), max(o.note)
  FROM customers c
  JOIN orders o      ON o.cust_id = c.id
  JOIN line_items li ON li.order_id = o.id
 GROUP BY c.region
 ORDER BY c.region;

-- Index range scans on text keys.
SELECT count(*), sum(price), min(sku), max(sku) FROM line_items
 WHERE sku BETWEEN 'SKU-C-1000' AND 'SKU-F-2000';
SELECT count(*), sum(length(payload)), min(payload) FROM line_items
 WHERE payload >= 'a0' AND payload < 'a4';
SELECT status, count(*), sum(amount), min(note), max(note) FROM orders
 GROUP BY status ORDER BY status;
SELECT id, name, email FROM customers
 WHERE name LIKE 'echo-1%' ORDER BY name, id LIMIT 5;

-- Full sort of the largest table by a non-indexed expression: the sorter
-- must spill; LIMIT/OFFSET picks rows from the middle and the end.
SELECT id, order_id, sku, substr(payload, 1, 24) FROM line_items
 ORDER BY (price*7919 + qty) % 10007, substr(payload, 9, 8), id
 LIMIT 3 OFFSET 99997;
SELECT id, cust_id, amount, note FROM orders
 ORDER BY substr(note, 17, 8) DESC, id
 LIMIT 3 OFFSET 100000;
SELECT id, cust_id, amount, note FROM orders
 ORDER BY substr(note, 17, 8) DESC, id
 LIMIT 2 OFFSET 199998;

-- Window functions over all orders.
SELECT count(*), sum(rn), sum(running % 1000003), sum(rk), max(running)
  FROM (SELECT row_number() OVER (PARTITION BY cust_id ORDER BY id) AS rn,
               sum(amount) OVER (PARTITION BY cust_id ORDER BY id) AS running,
               rank() OVER (ORDER BY amount DESC) AS rk
          FROM orders);
SELECT cust_id, id, amount, lag(amount) OVER w, lead(id) OVER w,
       sum(amount) OVER w
  FROM orders
 WHERE cust_id IN (7, 4242, 49999)
WINDOW w AS (PARTITION BY cust_id ORDER BY id)
 ORDER BY cust_id, id;

-- Large-row reads through overflow chains.
SELECT count(*), sum(instr(body, '<end')), sum(length(body)) FROM docs
 WHERE body LIKE '%<end 1%';

------------------------------------------------------------------------------
-- Phase 4: rollback and savepoints
------------------------------------------------------------------------------
BEGIN;
DELETE FROM line_items WHERE id % 4 = 0;
UPDATE orders SET amount = amount + 1, note = note || ' tmp' WHERE id % 4 = 1;
UPDATE docs SET body = body || body WHERE id % 3 = 0;
SELECT 'in-txn', (SELECT count(*) FROM line_items), (SELECT sum(amount) FROM orders),
       (SELECT sum(length(body)) FROM docs);
ROLLBACK;
SELECT 'rolled-back', (SELECT count(*) FROM line_items), (SELECT sum(amount) FROM orders),
       (SELECT sum(length(body)) FROM docs), (SELECT sum(length(payload)) FROM line_items);

BEGIN;
SAVEPOINT s1;
UPDATE customers SET balance = balance + 1 WHERE id % 20 = 1;
SAVEPOINT s2;
DELETE FROM orders WHERE id <= 8000;
INSERT INTO docs(id,title,body) SELECT id + 10000, title || '-copy', body FROM docs WHERE id % 10 = 0;
SELECT 's2', (SELECT count(*) FROM orders), (SELECT count(*) FROM docs);
ROLLBACK TO s2;
SELECT 's1', (SELECT count(*) FROM orders), (SELECT count(*) FROM docs),
       (SELECT sum(balance) FROM customers);
ROLLBACK TO s1;
RELEASE s1;
COMMIT;
SELECT 'after-savepoints', (SELECT sum(balance) FROM customers),
       (SELECT count(*) FROM orders), (SELECT count(*) FROM docs);

------------------------------------------------------------------------------
-- Phase 5: update about a third of the rows
------------------------------------------------------------------------------
BEGIN;
UPDATE orders
   SET amount = amount * 3 % 100003,
       status = CASE status WHEN 'NEW ' THEN 'PAID' WHEN 'PAID' THEN 'SHIP' ELSE status END,
       note   = note || printf(' upd%05d', id % 99991)
 WHERE id % 3 = 0;
UPDATE line_items
   SET payload = CASE WHEN id % 2 = 0
                      THEN substr(payload, 20) || printf('|%x', id*2654435761 % 4294967296)
                      ELSE payload || substr(payload, 1, 16) END,
       sku = sku || 'x',
       qty = qty + 1
 WHERE id % 3 = 1;
UPDATE customers
   SET name = upper(substr(name, 1, 1)) || substr(name, 2) || '!',
       balance = -balance
 WHERE id % 3 = 2;
UPDATE docs SET body = substr(body, 1 + id % 500) || printf('<upd %d>', id)
 WHERE id % 3 = 0;
COMMIT;

PRAGMA integrity_check;

SELECT 'update', count(*), sum(region), sum(balance), sum(length(name)+length(email)),
       min(name), max(name) FROM customers;
SELECT 'update', count(*), sum(cust_id), sum(amount), sum(length(note)),
       min(note), max(note) FROM orders;
SELECT 'update', count(*), sum(order_id), sum(qty*price), sum(length(payload)),
       min(payload), max(sku) FROM line_items;
SELECT 'update', count(*), sum(length(body)), sum(unicode(substr(body, 1 + id*37 % length(body), 1))),
       min(title), max(substr(body, -12)) FROM docs;

------------------------------------------------------------------------------
-- Phase 6: delete about a fifth of the rows
------------------------------------------------------------------------------
BEGIN;
DELETE FROM orders     WHERE id % 5 = 2;
DELETE FROM line_items WHERE order_id % 5 = 2 OR id % 23 = 0;
DELETE FROM customers  WHERE id % 5 = 4;
DELETE FROM docs       WHERE id % 5 = 1;
COMMIT;

SELECT 'delete', count(*), sum(balance), sum(length(name)), min(email), max(email) FROM customers;
SELECT 'delete', count(*), sum(amount), sum(length(note)), min(note), max(note) FROM orders;
SELECT 'delete', count(*), sum(qty*price), sum(length(payload)), min(payload), max(payload) FROM line_items;
SELECT 'delete', count(*), sum(length(body)), min(title), max(title) FROM docs;
-- Orphan check via index lookups.
SELECT 'orphans', count(*) FROM orders o
 WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.cust_id);

------------------------------------------------------------------------------
-- Phase 7: CREATE TABLE AS SELECT, index drop/re-create
------------------------------------------------------------------------------
CREATE TABLE cust_summary AS
SELECT c.id AS cust_id, c.region, c.name,
       count(o.id) AS n_orders, coalesce(sum(o.amount), 0) AS total_amount,
       max(o.note) AS last_note
  FROM customers c LEFT JOIN orders o ON o.cust_id = c.id
 GROUP BY c.id;
CREATE INDEX cs_region ON cust_summary(region, total_amount, cust_id);

SELECT region, count(*), sum(n_orders), sum(total_amount), min(name), max(last_note)
  FROM cust_summary GROUP BY region ORDER BY region;
SELECT cust_id, region, n_orders, total_amount FROM cust_summary
 ORDER BY total_amount DESC, cust_id LIMIT 5;

DROP INDEX li_payload;
SELECT 'no-index', count(*), min(payload), max(payload) FROM line_items
 WHERE payload >= 'b' AND payload < 'b8';
CREATE INDEX li_payload ON line_items(payload);
SELECT 'reindexed', count(*), min(payload), max(payload) FROM line_items
 WHERE payload >= 'b' AND payload < 'b8';

CREATE TABLE scratch AS SELECT * FROM line_items WHERE id % 5 = 0;
SELECT 'scratch', count(*), sum(length(payload)) FROM scratch;
DROP TABLE scratch;

-- Checksums before VACUUM (repeated after VACUUM; must match).
SELECT 'pre-vacuum', (SELECT sum(id*7 + balance % 1000 + length(name)) FROM customers),
       (SELECT sum(id*3 + amount + length(note)) FROM orders),
       (SELECT sum(id + qty*price + length(payload) + unicode(substr(payload, 1 + id % 50, 1))) FROM line_items),
       (SELECT sum(length(body) + unicode(substr(body, 1 + id % 2500, 1))) FROM docs),
       (SELECT sum(n_orders*region) FROM cust_summary);

------------------------------------------------------------------------------
-- Phase 8: VACUUM and final verification
------------------------------------------------------------------------------
VACUUM;
PRAGMA integrity_check;

SELECT 'post-vacuum', (SELECT sum(id*7 + balance % 1000 + length(name)) FROM customers),
       (SELECT sum(id*3 + amount + length(note)) FROM orders),
       (SELECT sum(id + qty*price + length(payload) + unicode(substr(payload, 1 + id % 50, 1))) FROM line_items),
       (SELECT sum(length(body) + unicode(substr(body, 1 + id % 2500, 1))) FROM docs),
       (SELECT sum(n_orders*region) FROM cust_summary);
SELECT 'final', count(*), sum(length(payload)), min(payload), max(payload) FROM line_items
 INDEXED BY li_payload WHERE payload > '';
SELECT 'final', count(*), min(name), max(name) FROM customers INDEXED BY cust_name WHERE name > '';
SELECT id, cust_id, amount, note FROM orders ORDER BY note DESC, id LIMIT 3;
