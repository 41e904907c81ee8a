/*
 * format.c - the parts of the entry format (format.h) that no get needs:
 * writing an entry, expiry rows, and building key ranges.
 */
#include "fmacros.h"

#include <string.h>

#include "format.h"

void lmc__entry_write(unsigned char *dst, const void *key, size_t klen, int is_long,
                      const void *val, size_t vlen, const lmc__emeta *m)
{
    uint16_t kl16 = is_long ? (uint16_t)(klen - 1) : 0; /* klen <= LMC_MAX_KEY = 65536 */
    bool ext = lmc__emeta_ext(m);
    dst[0] = LMC__ENTRY_FORMAT;
    dst[1] = (unsigned char)((is_long ? LMC__EF_LONGKEY : 0) | (ext ? LMC__EF_EXT : 0));
    memcpy(dst + 2, &m->row_lag, 2);
    memcpy(dst + 4, &m->row_seq, 2);
    memcpy(dst + 6, &kl16, 2);
    memcpy(dst + 8, &m->expires_at, 8);
    memcpy(dst + 16, &m->version, 8);
    unsigned char *p = dst + LMC__HDR_SIZE;
    if (ext) {
        memcpy(p, &m->grace_ms, 4);
        memcpy(p + 4, &m->fill_ms, 4);
        p += LMC__EXT_SIZE;
    }
    if (is_long) {
        memcpy(p, key, klen);
        p += klen;
    }
    if (vlen)
        memcpy(p, val, vlen);
}

size_t lmc__expkey_make(unsigned char *dst, uint64_t at, uint16_t seq, const MDB_val *skey)
{
    dst[0] = LMC__NS_ROW;
    for (int i = 8; i >= 1; i--) {
        dst[i] = (unsigned char)(at & 0xff);
        at >>= 8;
    }
    dst[9] = (unsigned char)(seq >> 8);
    dst[10] = (unsigned char)(seq & 0xff);
    memcpy(dst + 11, skey->mv_data, skey->mv_size);
    return 11 + skey->mv_size;
}

int lmc__expkey_parse(const MDB_val *row, uint64_t *at, uint16_t *seq, MDB_val *skey)
{
    if (!lmc__is_row_key(row) || row->mv_size > LMC__EXPKEY_MAX)
        return -1;
    const unsigned char *p = row->mv_data;
    uint64_t v = 0;
    for (int i = 1; i <= 8; i++)
        v = (v << 8) | p[i];
    *at = v;
    *seq = (uint16_t)((p[9] << 8) | p[10]);
    skey->mv_size = row->mv_size - 11;
    skey->mv_data = (void *)(uintptr_t)(p + 11);
    return lmc__is_entry_key(skey) ? 0 : -1;
}

void lmc__range_prefix(lmc__range *r, const void *prefix, size_t plen)
{
    /* The stored form of the prefix: the namespace byte and at most the part
     * of the key that stored keys keep. */
    size_t kept = plen < LMC__KEY_INLINE ? plen : LMC__KEY_INLINE;
    r->buf[0] = LMC__NS;
    if (kept)
        memcpy(r->buf + 1, prefix, kept);
    r->from = (MDB_val){1 + kept, r->buf};
    r->to = (MDB_val){0, NULL};
    r->whole_prefix = plen >= LMC__KEY_INLINE ? prefix : NULL;
    r->whole_len = plen;
    r->max_version = UINT64_MAX;
}

void lmc__range_closed(lmc__range *r, const MDB_val *first, const MDB_val *last)
{
    r->from = *first;
    r->to = *last;
    r->whole_prefix = NULL;
    r->whole_len = 0;
    r->max_version = UINT64_MAX;
}
