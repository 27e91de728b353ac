/*  pf_table — open addressing, linear probing, backward-shift deletion. */
#include "pf_table.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    uint64_t hash;
    void *item; //  NULL: empty
} slot_t;

struct _pf_table_t {
    slot_t *slots;
    size_t mask; //  capacity - 1, capacity a power of two
    size_t size;
    pf_table_match_fn *match;
};

#define INITIAL_CAPACITY 1024
#define HUGE_PAGE        (2u * 1024 * 1024)

//  A large table is random access by nature: on 2 MiB pages (where the
//  kernel has them, madvise mode) a lookup no longer costs a TLB miss.
static slot_t *slots_new (size_t capacity)
{
    size_t size = capacity * sizeof (slot_t);
    if (size < HUGE_PAGE)
        return calloc (capacity, sizeof (slot_t));
    slot_t *slots = aligned_alloc (HUGE_PAGE, size);
    if (slots) {
        madvise (slots, size, MADV_HUGEPAGE);
        memset (slots, 0, size);
    }
    return slots;
}

pf_table_t *pf_table_new (pf_table_match_fn *match)
{
    pf_table_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = slots_new (INITIAL_CAPACITY);
    if (!self->slots) {
        free (self);
        return NULL;
    }
    self->mask = INITIAL_CAPACITY - 1;
    self->match = match;
    return self;
}

void pf_table_destroy (pf_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->slots);
    free (*self_p);
    *self_p = NULL;
}

uint64_t pf_table_hash (const void *data, size_t size)
{
    const unsigned char *bytes = data;
    uint64_t hash = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++) {
        hash ^= bytes[i];
        hash *= 0x100000001b3ull;
    }
    //  FNV's low bits are weak for similar keys; the table indexes by them.
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    return hash;
}

void *pf_table_find (pf_table_t *self, uint64_t hash, const void *key)
{
    for (size_t index = hash & self->mask;; index = (index + 1) & self->mask) {
        slot_t *slot = &self->slots[index];
        if (!slot->item)
            return NULL;
        if (slot->hash == hash && self->match (slot->item, key))
            return slot->item;
    }
}

static void place (slot_t *slots, size_t mask, uint64_t hash, void *item)
{
    size_t index = hash & mask;
    while (slots[index].item)
        index = (index + 1) & mask;
    slots[index].hash = hash;
    slots[index].item = item;
}

static int grow (pf_table_t *self)
{
    size_t capacity = (self->mask + 1) * 2;
    slot_t *slots = slots_new (capacity);
    if (!slots)
        return -1;
    for (size_t index = 0; index <= self->mask; index++)
        if (self->slots[index].item)
            place (slots, capacity - 1, self->slots[index].hash, self->slots[index].item);
    free (self->slots);
    self->slots = slots;
    self->mask = capacity - 1;
    return 0;
}

int pf_table_insert (pf_table_t *self, uint64_t hash, void *item)
{
    if ((self->size + 1) * 2 > self->mask + 1 && grow (self) != 0)
        return -1;
    place (self->slots, self->mask, hash, item);
    self->size++;
    return 0;
}

void *pf_table_remove (pf_table_t *self, uint64_t hash, const void *key)
{
    size_t index = hash & self->mask;
    for (;; index = (index + 1) & self->mask) {
        slot_t *slot = &self->slots[index];
        if (!slot->item)
            return NULL;
        if (slot->hash == hash && self->match (slot->item, key))
            break;
    }
    void *item = self->slots[index].item;
    //  Shift back every following entry that may sit in the hole's place.
    size_t hole = index;
    for (size_t next = (hole + 1) & self->mask; self->slots[next].item;
         next = (next + 1) & self->mask) {
        size_t home = self->slots[next].hash & self->mask;
        //  The entry at next may move to hole unless its home lies
        //  cyclically in (hole, next].
        bool stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!stays) {
            self->slots[hole] = self->slots[next];
            hole = next;
        }
    }
    self->slots[hole].item = NULL;
    self->size--;
    return item;
}

size_t pf_table_size (pf_table_t *self)
{
    return self->size;
}
