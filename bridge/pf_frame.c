/*  pf_frame — incremental frame reader and queued frame writer.

    The reader is a two-state machine (collecting the 4 header bytes, then
    collecting the body) so that any split of the input works the same. The
    body buffer grows geometrically up to the declared length, never past it:
    memory follows the bytes that actually arrived, and a complete frame is
    handed out without a final copy or shrink. */
#include "pf_frame.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

//  Smallest body allocation: one pipe buffer's worth, so common frames need
//  a single allocation and large ones grow in few steps.
#define BODY_MIN_ALLOC (64u * 1024)

typedef struct _frame_t frame_t;
struct _frame_t {
    frame_t *next;
    uint8_t *data;
    size_t size;
};

struct _pf_frame_reader_t {
    size_t max_frame;
    uint8_t header[PF_FRAME_HEADER_SIZE];
    size_t header_have;
    bool in_body;
    size_t body_size; //  declared length of the frame being collected
    size_t body_have;
    size_t body_alloc;
    uint8_t *body;
    frame_t *head; //  complete frames, oldest first
    frame_t *tail;
    size_t frames;
    size_t queued_bytes;
    bool failed;
    uint64_t bad_length;
};

pf_frame_reader_t *pf_frame_reader_new (size_t max_frame)
{
    pf_frame_reader_t *self = calloc (1, sizeof *self);
    if (!self) return NULL;
    self->max_frame = max_frame ? max_frame : PF_FRAME_DEFAULT_MAX;
    return self;
}

void pf_frame_reader_destroy (pf_frame_reader_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_frame_reader_t *self = *self_p;
    while (self->head) {
        frame_t *frame = self->head;
        self->head = frame->next;
        free (frame->data);
        free (frame);
    }
    free (self->body);
    free (self);
    *self_p = NULL;
}

static int s_reader_fail (pf_frame_reader_t *self)
{
    self->failed = true;
    free (self->body);
    self->body = NULL;
    self->body_alloc = 0;
    return -1;
}

//  Moves the collected body to the queue and starts on the next header.
static int s_reader_complete (pf_frame_reader_t *self)
{
    frame_t *frame = malloc (sizeof *frame);
    if (!frame) return s_reader_fail (self);
    if (!self->body) {
        //  Zero-length frame: still a real buffer, so pop's NULL means "none".
        self->body = malloc (1);
        if (!self->body) {
            free (frame);
            return s_reader_fail (self);
        }
        self->body_alloc = 1;
    }
    frame->next = NULL;
    frame->data = self->body;
    frame->size = self->body_size;
    if (self->tail)
        self->tail->next = frame;
    else
        self->head = frame;
    self->tail = frame;
    self->frames++;
    self->queued_bytes += self->body_alloc;
    self->body = NULL;
    self->body_alloc = 0;
    self->body_have = 0;
    self->body_size = 0;
    self->in_body = false;
    self->header_have = 0;
    return 0;
}

static int s_reader_reserve (pf_frame_reader_t *self, size_t needed)
{
    if (needed <= self->body_alloc) return 0;
    size_t alloc = self->body_alloc * 2;
    if (alloc < BODY_MIN_ALLOC) alloc = BODY_MIN_ALLOC;
    if (alloc < needed) alloc = needed;
    if (alloc > self->body_size) alloc = self->body_size;
    uint8_t *body = realloc (self->body, alloc);
    if (!body) return -1;
    self->body = body;
    self->body_alloc = alloc;
    return 0;
}

int pf_frame_reader_feed (pf_frame_reader_t *self, const void *data, size_t size)
{
    if (self->failed) return -1;
    const uint8_t *bytes = data;
    while (size > 0) {
        if (!self->in_body) {
            size_t take = PF_FRAME_HEADER_SIZE - self->header_have;
            if (take > size) take = size;
            memcpy (self->header + self->header_have, bytes, take);
            self->header_have += take;
            bytes += take;
            size -= take;
            if (self->header_have < PF_FRAME_HEADER_SIZE) break;
            uint64_t length = (uint64_t)self->header[0] << 24 | (uint64_t)self->header[1] << 16 |
                              (uint64_t)self->header[2] << 8 | (uint64_t)self->header[3];
            if (length > self->max_frame) {
                self->bad_length = length;
                return s_reader_fail (self);
            }
            self->in_body = true;
            self->body_size = (size_t)length;
            self->body_have = 0;
            if (length == 0 && s_reader_complete (self)) return -1;
            continue;
        }
        size_t take = self->body_size - self->body_have;
        if (take > size) take = size;
        if (s_reader_reserve (self, self->body_have + take)) return s_reader_fail (self);
        memcpy (self->body + self->body_have, bytes, take);
        self->body_have += take;
        bytes += take;
        size -= take;
        if (self->body_have == self->body_size && s_reader_complete (self)) return -1;
    }
    return 0;
}

uint8_t *pf_frame_reader_pop (pf_frame_reader_t *self, size_t *size_p)
{
    frame_t *frame = self->head;
    if (!frame) return NULL;
    self->head = frame->next;
    if (!self->head) self->tail = NULL;
    self->frames--;
    self->queued_bytes -= frame->size ? frame->size : 1;
    uint8_t *data = frame->data;
    if (size_p) *size_p = frame->size;
    free (frame);
    return data;
}

size_t pf_frame_reader_frames (pf_frame_reader_t *self)
{
    return self->frames;
}

bool pf_frame_reader_failed (pf_frame_reader_t *self)
{
    return self->failed;
}

uint64_t pf_frame_reader_bad_length (pf_frame_reader_t *self)
{
    return self->bad_length;
}

size_t pf_frame_reader_buffered (pf_frame_reader_t *self)
{
    return self->queued_bytes + self->body_alloc;
}

//  Writer: one allocation per frame holding prefix and payload, so a partial
//  write only needs an offset into the oldest chunk.
typedef struct _chunk_t chunk_t;
struct _chunk_t {
    chunk_t *next;
    size_t size;
    size_t offset;
    uint8_t data[];
};

struct _pf_frame_writer_t {
    chunk_t *head;
    chunk_t *tail;
    size_t pending_bytes;
};

pf_frame_writer_t *pf_frame_writer_new (void)
{
    return calloc (1, sizeof (pf_frame_writer_t));
}

void pf_frame_writer_destroy (pf_frame_writer_t **self_p)
{
    if (!self_p || !*self_p) return;
    pf_frame_writer_clear (*self_p);
    free (*self_p);
    *self_p = NULL;
}

int pf_frame_writer_push (pf_frame_writer_t *self, const void *data, size_t size)
{
    if ((uint64_t)size > UINT32_MAX || size > SIZE_MAX - sizeof (chunk_t) - PF_FRAME_HEADER_SIZE)
        return -1;
    chunk_t *chunk = malloc (sizeof *chunk + PF_FRAME_HEADER_SIZE + size);
    if (!chunk) return -1;
    chunk->next = NULL;
    chunk->size = PF_FRAME_HEADER_SIZE + size;
    chunk->offset = 0;
    chunk->data[0] = (uint8_t)(size >> 24);
    chunk->data[1] = (uint8_t)(size >> 16);
    chunk->data[2] = (uint8_t)(size >> 8);
    chunk->data[3] = (uint8_t)size;
    if (size) memcpy (chunk->data + PF_FRAME_HEADER_SIZE, data, size);
    if (self->tail)
        self->tail->next = chunk;
    else
        self->head = chunk;
    self->tail = chunk;
    self->pending_bytes += chunk->size;
    return 0;
}

//  Writes the queued frames with one writev per up to 64 of them, so a
//  burst of requests for one bridge costs one system call (and wakes the
//  bridge once), until the pipe is full.
int pf_frame_writer_flush (pf_frame_writer_t *self, int fd)
{
    while (self->head) {
        struct iovec iov[64];
        int count = 0;
        size_t total = 0;
        for (chunk_t *chunk = self->head; chunk && count < 64; chunk = chunk->next, count++) {
            iov[count].iov_base = chunk->data + chunk->offset;
            iov[count].iov_len = chunk->size - chunk->offset;
            total += iov[count].iov_len;
        }
        ssize_t written = writev (fd, iov, count);
        if (written < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        if (written == 0) return 0;
        self->pending_bytes -= (size_t)written;
        for (size_t left = (size_t)written; left > 0;) {
            chunk_t *chunk = self->head;
            size_t rest = chunk->size - chunk->offset;
            if (left < rest) {
                chunk->offset += left;
                break;
            }
            left -= rest;
            self->head = chunk->next;
            if (!self->head) self->tail = NULL;
            free (chunk);
        }
        if ((size_t)written < total) return 0; //  the pipe is full
    }
    return 0;
}

bool pf_frame_writer_pending (pf_frame_writer_t *self)
{
    return self->head != NULL;
}

size_t pf_frame_writer_pending_bytes (pf_frame_writer_t *self)
{
    return self->pending_bytes;
}

void pf_frame_writer_clear (pf_frame_writer_t *self)
{
    while (self->head) {
        chunk_t *chunk = self->head;
        self->head = chunk->next;
        free (chunk);
    }
    self->tail = NULL;
    self->pending_bytes = 0;
}
