/*
 * flushtab.c - reading the table of flush markers (flushtab.h says how it
 * works and why it is safe without a reader lock): the copy that reads and
 * writes check, under each slot's sequence lock, and the check itself.
 */
#include "fmacros.h"

#include <sched.h>
#include <string.h>

#include "flushtab.h"

/* Zeros: no marker, for cores without a stats file (flushtab.h). */
lmc__flushes lmc__flush_none;

/* Copy one slot under its sequence lock: false if it was being rewritten. */
static bool copy_slot(const lmc__fmark *m, lmc__fview *v, unsigned slot)
{
    uint32_t s1 = atomic_load_explicit(&m->seq, memory_order_acquire);
    if (s1 & 1)
        return false;
    /* Acquire loads, each paired with the writer's release store of the
     * same word (slot_write, flush.c): a reader that sees any word of a rewrite sees
     * the odd sequence stored before it in the check below.  (Fences would
     * do the same, but ThreadSanitizer cannot check fences.) */
    size_t plen = atomic_load_explicit(&m->plen, memory_order_acquire);
    uint64_t version = atomic_load_explicit(&m->version, memory_order_acquire);
    uint64_t words[LMC__FLUSH_PREFIX_MAX / 8];
    size_t nw = plen <= LMC__FLUSH_PREFIX_MAX ? (plen + 7) / 8 : 0;
    for (size_t i = 0; i < nw; i++)
        words[i] = atomic_load_explicit(&m->prefix[i], memory_order_acquire);
    if (atomic_load_explicit(&m->seq, memory_order_relaxed) != s1)
        return false;
    if (plen > LMC__FLUSH_PREFIX_MAX)
        return true; /* no writer writes that: a damaged file; nothing to copy */
    unsigned n = v->n;
    v->m[n].slot = slot;
    v->m[n].plen = plen;
    v->m[n].version = version;
    memcpy(v->m[n].prefix, words, plen);
    v->n = n + 1;
    return true;
}

void lmc__flush_copy(const lmc__flushes *t, uint32_t used, lmc__fview *v)
{
    /* A slot whose sequence moved was retired and is being reused: the
     * table has changed under the copy, so copy it again from its word.
     * Only a writer rewriting a slot that was retired in between moves a
     * sequence, and a slot with an odd sequence is never in `used` (a
     * writer killed while writing one left its bit clear), so this ends as
     * soon as the writers pause. */
    for (unsigned tries = 0;; tries++) {
        v->n = 0;
        bool torn = false;
        for (unsigned i = 0; i < LMC__FLUSH_SLOTS && !torn; i++)
            if (used & (1u << i))
                torn = !copy_slot(&t->mark[i], v, i);
        if (!torn)
            return;
        if (tries >= 100000) {
            /* A published slot that stays odd is a damaged stats file (no
             * writer leaves one so): a marker that hides everything keeps
             * every answer a miss rather than hang or serve a flushed
             * value. */
            v->n = 1;
            v->m[0].slot = LMC__FLUSH_SLOTS;
            v->m[0].plen = 0;
            v->m[0].version = UINT64_MAX;
            return;
        }
        sched_yield();
        used = atomic_load_explicit(&t->used, memory_order_acquire);
    }
}

bool lmc__flush_hides_slow(const lmc__fview *v, const lmc__entry *e)
{
    for (unsigned i = 0; i < v->n; i++)
        if (e->version <= v->m[i].version && e->klen >= v->m[i].plen &&
            memcmp(e->key, v->m[i].prefix, v->m[i].plen) == 0)
            return true;
    return false;
}
