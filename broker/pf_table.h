/*  pf_table — an open-addressing hash table of items that hold their own keys.

    Made for the broker's session table: a million entries must be cheap in
    memory and, above all, in cache misses per lookup. zhashx costs a bucket,
    a separately allocated item and the key per lookup; here a lookup reads
    one 16-byte slot (hash and item pointer, linear probing) and then the item
    itself, whose full hash is compared before its key. Load stays at or below
    one half; deletion shifts the following entries back, so no tombstones. */
#ifndef PF_TABLE_H_INCLUDED
#define PF_TABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pf_table_t pf_table_t;

//  True if item has key (called only when the hashes are equal).
typedef bool(pf_table_match_fn) (const void *item, const void *key);

pf_table_t *pf_table_new (pf_table_match_fn *match);

//  Frees the table, not the items. Safe on NULL; nulls *self_p.
void pf_table_destroy (pf_table_t **self_p);

//  The item with this key, or NULL.
void *pf_table_find (pf_table_t *self, uint64_t hash, const void *key);

//  Adds an item whose key is not in the table yet. 0, or -1 out of memory.
int pf_table_insert (pf_table_t *self, uint64_t hash, void *item);

//  Removes and returns the item with this key, or NULL if there is none.
void *pf_table_remove (pf_table_t *self, uint64_t hash, const void *key);

size_t pf_table_size (pf_table_t *self);

//  A 64-bit hash of bytes (FNV-1a with a final mix).
uint64_t pf_table_hash (const void *data, size_t size);

#endif
