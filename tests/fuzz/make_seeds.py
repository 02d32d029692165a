#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""make_seeds.py -- write the hand-made part of the seed corpus.

Each seed is a configuration and a sequence of calls in fuzz_api.c's
encoding, aimed at one corner of the pool rules; libFuzzer mutates from
there.  Run from anywhere: writes tests/fuzz/corpus/seed-*.
"""
import os

PAGE_OPS = {"pin": 0, "unpin": 1, "release": 2}
NO_WAIT, TIMEOUT_1US, BAD_TIMEOUT = 3, 1, 0


def config(pages=14, frac=2, prot=0, flags=0, extra=None):
    """pages: total = (2 + pages % 63) pages; frac indexes fuzz_api's
    fractions (0: default, 1: 0.25, 2: 0.5, 3: 0.75, 4: 0.9, 5..7 bad or
    tiny); prot: protected pages (low 4 bits), 0x80 a total 16 times
    larger (consumers reserve quota ahead); flags: 1 borrow, 2 LRU, 0x0c
    bad policy, bits 4-6 max request / cache / bad limit, 0x80 odd
    total."""
    b = [pages, frac, prot, flags]
    if flags & 0x80:
        b += [extra & 0xFF, extra >> 8]
    return b


def size(kind, arg=None):
    """kind: 'tiny' (arg < 64), 'small' (arg < 16384), 'pages' (1-8),
    'zero', 'free', 'free+1', 'max', 'max+1', 'storage', 'total', 'huge',
    'free-page'."""
    names = ["zero", "tiny", "small", "pages", "free", "free+1", "max",
             "max+1", "storage", "total", "huge", "free-page"]
    k = names.index(kind)
    if kind in ("tiny", "small"):
        v = arg - 1
        return [k, v & 0xFF, v >> 8]
    if kind == "pages":
        return [k, arg - 1]
    return [k]


def acquire_exec(eid, sz, timeout=NO_WAIT):
    return [0, eid] + sz + [timeout]


def exec_alloc(eid, sz, timeout=NO_WAIT, fault=False):
    return [1, eid] + sz + [timeout, 0 if fault else 1]


def release_exec(eid, mode, amount=0):
    """mode: 0 all its own bytes, 1 one more than held, 2 zero, 3 part."""
    b = [2, eid, mode]
    return b + ([amount & 0xFF, amount >> 8] if mode == 3 else [])


def release_all(eid):
    return [3, eid]


def exec_free(slot, how=2, via=0):
    """how: 0 a pointer not the manager's (or into the block), 1 through
    the books @via (an exec id 0-3, or a consumer slot 4-6), 2 through its
    own books, then once more (a double free)."""
    return [4, slot + 16 * how, via]


def acquire_storage(pid, sz, timeout=NO_WAIT):
    return [5, pid] + sz + [timeout]


def storage_alloc(pid, sz, timeout=NO_WAIT, fault=False):
    return [6, pid] + sz + [timeout, 0 if fault else 1]


def page(op, pid):
    return [7, pid + 16 * PAGE_OPS[op]]


def async_req(pool, ident, sz, wait=True):
    k = pool  # k % 5 == pool, bit 4 clear: a 10 s deadline
    if not wait:
        k = 0x10 + pool + (5 if pool == 1 else 0)  # keep k % 5 == pool
        while k % 5 != pool:
            k += 1
    return [9, k, ident] + sz


def null(case):
    return [12, case]


NCONS = 3


def c_open(slot, eid):
    return [10, slot, eid]


def c_close(slot):
    return [10, slot]


def c_acquire(slot, sz, timeout=NO_WAIT):
    return [10, slot + NCONS * 1, 0] + sz + [timeout]


def c_alloc(slot, sz, timeout=NO_WAIT, fault=False):
    return [10, slot + NCONS * 1, 1] + sz + [timeout, 0 if fault else 1]


def c_calloc(slot, n, sz, timeout=NO_WAIT):
    return [10, slot + NCONS * 3, n - 1] + sz + [timeout, 1]


def c_release(slot, mode, amount=0):
    b = [10, slot + NCONS * 4, mode]
    return b + ([amount & 0xFF, amount >> 8] if mode == 3 else [])


def c_realloc(slot, blk, sz, timeout=NO_WAIT):
    return [10, slot + NCONS * 5, blk] + sz + [timeout]


def h_alloc(slot, pid, sz, timeout=NO_WAIT, fault=False):
    return [13, 0, pid] + sz + [timeout, 0 if fault else 1, slot]


def s_range(slot, lo, hi_mode, timeout=NO_WAIT):
    """hi_mode: 0 the min, 1 twice it and a page, 2 below it (invalid),
    3 unbounded."""
    return [14, slot] + lo + [hi_mode, timeout, 1]


def s_limits(slot, lo, hi):
    """lo indexes fuzz_api's mins (pages: 0, 1, 2, 4, 8; 5 the execution
    pool, 6 one byte more); hi: 0 none, 1 + 4 * k: lo + k pages, 2 below
    lo, 3 a page above what it holds."""
    return [14, slot + NCONS * 2, lo, hi]


def s_reclaim(slot, on=True, gives=True, self_=False):
    return [14, slot + NCONS * 3, int(on) | 2 * int(gives) | 4 * int(self_)]


H_OPS = {"pin": 1, "unpin": 2, "release": 3, "data": 4, "put": 5}


def h_op(op, slot):
    return [13, H_OPS[op] + 6 * slot]


def budget(case, timeout=NO_WAIT, arg=0, odd=False):
    """mm_set_budget (op 12, then a byte of 8 or more): case 0 the
    ceiling, 1 a page less, 2 half, 3 exactly what is in use, 4 zero (a
    page with odd), 5 the ceiling + 1, 6 arg pages + 2 (+1 byte with
    odd); timeout byte 0 is a bad one."""
    k = 2 * case | (0x80 if odd else 0)
    b = [12, 8, k]
    if case >= 6:
        b += [arg & 0xFF, arg >> 8]
    return b + [timeout]


def external(src, case, timeout=NO_WAIT, sz=None):
    """mm_external_set of source src: case 0 nothing, 1 a page more, 2 a
    page less, 3 all that is free more, 4 the ceiling + 1, 5 size(...)."""
    k = next(k for k in range(1, 256, 2)
             if k // 2 % 3 == src and k // 8 % 6 == case)
    return [12, 8, k] + (sz if case == 5 else []) + [timeout]


SEEDS = {
    # a budget that shrinks under full storage (pages evicted), grows
    # back to its ceiling, shrinks below what is in use (timed out), and
    # refusals: too small, past the ceiling, a bad timeout
    "resize": config(frac=2 | 0x80) + sum(
        (acquire_storage(i, size("pages", 1)) for i in range(8)), []) +
        page("pin", 0) + budget(2) + budget(0) +
        acquire_exec(0, size("max")) + budget(1) + budget(3) +
        budget(4) + budget(4, odd=True) + budget(5) + budget(0, timeout=0) +
        budget(6, arg=9) + release_all(0) + budget(0),
    # memory outside the manager: granted, grown to all that is free,
    # declined, held and timed out, given back, forgotten
    "external": config(pages=30) + external(0, 1) + external(0, 3) +
        external(1, 1) + external(1, 1, TIMEOUT_1US) + external(2, 4) +
        acquire_storage(0, size("pages", 1)) + external(0, 2) +
        external(1, 5, sz=size("pages", 3)) + external(0, 0) +
        external(1, 0),
    # storage fills, then each new page evicts unpinned ones
    "storage-evicts": config() + sum(
        (storage_alloc(i, size("pages", 1 + i % 3)) + page("unpin", i)
         for i in range(12)), []),
    # execution borrows free storage, then evicts unpinned pages
    "exec-borrows-evicts": config() + sum(
        (acquire_storage(i, size("pages", 1)) for i in range(8)), []) +
        acquire_exec(0, size("free")) + acquire_exec(1, size("pages", 4)) +
        release_exec(0, 0) + acquire_exec(2, size("total")),
    # the protected floor: execution may not evict below 4 pages
    "protected-floor": config(prot=4) + sum(
        (acquire_storage(i, size("pages", 1 + i % 2)) for i in range(8)),
        []) + acquire_exec(0, size("free")) +
        acquire_exec(1, size("pages", 3)) + acquire_exec(1, size("pages", 5)),
    # pinned pages cannot be evicted: declines, timeouts
    "all-pinned": config() + sum(
        (storage_alloc(i, size("pages", 2)) for i in range(8)), []) +
        storage_alloc(9, size("pages", 1)) +
        storage_alloc(9, size("pages", 1), TIMEOUT_1US) +
        acquire_exec(0, size("free+1"), TIMEOUT_1US) + page("unpin", 3) +
        page("release", 3) + page("release", 4) + page("unpin", 4) +
        page("unpin", 4) + page("release", 4),
    # held asynchronous requests, cancelled; granted ones; bad pools
    "async": config() + acquire_exec(0, size("free")) +
        async_req(0, 1, size("pages", 1)) +
        async_req(1, 2, size("pages", 1)) +
        async_req(0, 1, size("pages", 1), wait=False) +
        release_exec(0, 3, 9000) + async_req(0, 1, size("tiny", 10)) +
        async_req(1, 3, size("pages", 1)) + [9, 4, 0] + size("tiny", 1) +
        [9, 15, 0] + size("tiny", 1),
    # blocks: allocate, free, wrong id, not ours, orphaned by release_all
    "blocks": config() + exec_alloc(0, size("tiny", 24)) +
        exec_alloc(0, size("small", 5000)) + exec_alloc(1, size("pages", 2)) +
        exec_free(0, 0) + exec_free(0, 1, via=1) + release_all(0) + exec_free(0) +
        exec_free(1) + exec_alloc(0, size("tiny", 8)) + release_exec(0, 0) +
        release_exec(1, 1) + exec_free(2) + exec_free(2),
    # the allocator fails under mm_exec_alloc and mm_storage_alloc
    "alloc-faults": config() + exec_alloc(0, size("pages", 1), fault=True) +
        sum((storage_alloc(i, size("pages", 2)) + page("unpin", i)
             for i in range(7)), []) +
        storage_alloc(8, size("pages", 3), fault=True) +
        exec_alloc(1, size("free+1"), fault=True),
    # exact limits and absurd sizes
    "limits": config(flags=0x10) + acquire_exec(0, size("max")) +
        acquire_exec(0, size("max+1")) + acquire_exec(1, size("zero")) +
        acquire_exec(1, size("huge")) + acquire_storage(0, size("storage")) +
        acquire_storage(1, size("total")) + acquire_storage(2, size("huge")) +
        acquire_exec(2, size("tiny", 1), BAD_TIMEOUT) +
        acquire_exec(2, size("tiny", 1), 2) + release_exec(0, 2) +
        release_all(3) + release_exec(3, 1),
    # storage borrows free execution capacity, and is made to give it back
    "storage-borrows": config(flags=1) + sum(
        (acquire_storage(i, size("pages", 3)) for i in range(8)), []) +
        acquire_exec(0, size("free")) + acquire_exec(1, size("pages", 6)) +
        release_all(0) + release_all(1),
    # sampled LRU: pins make pages recent
    "lru": config(flags=2) + sum(
        (storage_alloc(i, size("pages", 1)) + page("unpin", i)
         for i in range(14)), []) + page("pin", 2) + page("unpin", 2) +
        storage_alloc(14, size("pages", 4)) + storage_alloc(15,
                                                            size("pages", 4)),
    # a total that is not a whole number of pages; a small cache
    "odd-total": config(pages=5, flags=0x80 | 0x40, extra=1234) +
        acquire_storage(0, size("storage")) + acquire_exec(0, size("free")) +
        acquire_exec(0, size("tiny", 1)),
    "bad-calls": config() + sum((null(i) for i in range(8)), []),
    # consumer handles: books, blocks, another's refused, orphans, realloc
    "consumers": config(prot=0x80) + c_open(0, 1) + c_open(1, 1) +
        c_acquire(0, size("tiny", 100)) + c_alloc(0, size("small", 5000)) +
        c_alloc(1, size("tiny", 64)) + c_calloc(0, 3, size("tiny", 40)) +
        exec_free(1, 1, via=4) + c_realloc(0, 0, size("small", 9000)) +
        c_realloc(0, 2, size("tiny", 8)) + c_release(0, 3, 50) +
        release_all(1) + c_acquire(0, size("tiny", 1)) + exec_free(0) +
        exec_free(2, 1, via=5) + c_close(0) + c_close(1) + exec_free(1),
    # quota reserved ahead by several consumers, reclaimed for one request
    "consumer-quota": config(pages=62, prot=0x80) + c_open(0, 0) +
        c_open(1, 1) + c_open(2, 2) + c_acquire(0, size("pages", 1)) +
        c_acquire(1, size("pages", 2)) + c_alloc(2, size("small", 3000)) +
        acquire_exec(3, size("free")) + c_acquire(0, size("tiny", 1)) +
        c_release(1, 0) + acquire_exec(3, size("pages", 2)) +
        c_release(0, 1) + release_all(3) + c_close(2),
    # consumers asked to give memory back for a held request, the one
    # holding most first; one that gives nothing; a guarantee; a cap; a
    # range that takes what is free
    "reclaim": config(pages=62) + c_open(0, 0) + c_open(1, 1) +
        c_open(2, 2) + c_acquire(1, size("pages", 8)) +
        c_acquire(2, size("pages", 8)) + c_acquire(2, size("pages", 8)) +
        s_reclaim(1, gives=False) + s_reclaim(2) +
        acquire_exec(3, size("free")) +
        c_acquire(0, size("pages", 4), TIMEOUT_1US) +
        c_acquire(0, size("pages", 8), TIMEOUT_1US) +
        s_reclaim(0, self_=True) + c_acquire(0, size("pages", 2), TIMEOUT_1US) +
        release_all(3) + s_limits(1, 3, 1 + 4 * 2) +
        c_acquire(1, size("pages", 8)) + s_range(1, size("pages", 1), 3) +
        s_range(2, size("pages", 1), 1) + s_range(0, size("pages", 2), 2) +
        s_limits(0, 6, 0) + s_limits(1, 0, 0) + c_close(1),
    # page handles: pins through them, a release refused while pinned,
    # a page evicted under its handle, an id registered again
    "handles": config(pages=6) + h_alloc(0, 1, size("pages", 1)) +
        h_op("pin", 0) + h_op("release", 0) + h_op("unpin", 0) +
        h_op("unpin", 0) + h_op("data", 0) +
        sum((storage_alloc(p, size("pages", 1)) for p in range(2, 8)), []) +
        h_op("pin", 0) + h_op("data", 0) + h_op("release", 0) +
        h_alloc(1, 1, size("pages", 1)) + h_op("pin", 0) + h_op("put", 0) +
        h_op("unpin", 1) + h_op("release", 1) + h_op("data", 1) +
        h_op("put", 1),
}
for i, (frac, flags) in enumerate([(5, 0), (6, 0), (7, 0), (2, 0x0c),
                                   (2, 0x30), (2, 0x50)]):
    SEEDS["bad-config-%d" % i] = config(pages=0, frac=frac, flags=flags)
SEEDS["bad-config-protected"] = config(pages=2, prot=15)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(bytes(b & 0xFF for b in data))
print("%d seeds in %s" % (len(SEEDS), out))
