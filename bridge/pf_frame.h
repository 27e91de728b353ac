/*  pf_frame — length-prefixed framing for the bridge pipes, without any I/O.

    A frame is a 4-byte big-endian length, then that many bytes. The reader is
    fed whatever bytes a read() returned (any split: one byte at a time,
    several frames at once) and queues the complete frames; the caller pops
    them. A declared length above max_frame is a protocol fault: the reader
    stops for good and never allocates that length. Even a legal length is
    not allocated up front: the buffer grows as the bytes arrive, so a peer
    that announces 64 MiB and sends nothing costs nothing.

    The writer is a queue of pending output for a non-blocking fd: push adds
    a frame (prefix included), flush writes as much as the fd takes and keeps
    the rest, resuming mid-frame on the next flush. A broken pipe is reported
    as -1 with errno EPIPE; the process must ignore SIGPIPE (signal (SIGPIPE,
    SIG_IGN)), since MSG_NOSIGNAL does not exist for pipes. */
#ifndef PF_FRAME_H_INCLUDED
#define PF_FRAME_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF_FRAME_HEADER_SIZE 4
#define PF_FRAME_DEFAULT_MAX (64u * 1024 * 1024)

typedef struct _pf_frame_reader_t pf_frame_reader_t;
typedef struct _pf_frame_writer_t pf_frame_writer_t;

//  max_frame 0 means PF_FRAME_DEFAULT_MAX. NULL on allocation failure.
pf_frame_reader_t *pf_frame_reader_new (size_t max_frame);
void pf_frame_reader_destroy (pf_frame_reader_t **self_p);

//  Consumes size bytes. Returns 0, or -1 on a protocol fault (a declared
//  length above max_frame) or allocation failure; the fault is sticky: later
//  feeds return -1 and ignore their bytes. Frames completed before the fault
//  stay poppable.
int pf_frame_reader_feed (pf_frame_reader_t *self, const void *data, size_t size);

//  Pops the oldest complete frame: a malloc'd buffer the caller frees, its
//  size in *size_p (a zero-length frame is a valid 1-byte allocation with
//  *size_p == 0). NULL when no complete frame is queued.
uint8_t *pf_frame_reader_pop (pf_frame_reader_t *self, size_t *size_p);

//  Number of complete frames waiting to be popped.
size_t pf_frame_reader_frames (pf_frame_reader_t *self);

//  True once a protocol fault happened.
bool pf_frame_reader_failed (pf_frame_reader_t *self);

//  The length the peer declared in the faulting header (for the log); 0 if none.
uint64_t pf_frame_reader_bad_length (pf_frame_reader_t *self);

//  Bytes of memory the reader holds for frames (partial and queued).
size_t pf_frame_reader_buffered (pf_frame_reader_t *self);

//  NULL on allocation failure.
pf_frame_writer_t *pf_frame_writer_new (void);
void pf_frame_writer_destroy (pf_frame_writer_t **self_p);

//  Queues one frame: the length prefix and a copy of data. Returns 0, or -1
//  if size does not fit in 32 bits or on allocation failure.
int pf_frame_writer_push (pf_frame_writer_t *self, const void *data, size_t size);

//  Writes queued bytes to the non-blocking fd until it would block or the
//  queue is empty. Returns 0 (check pending for what is left), or -1 with
//  errno set on a write error (EPIPE when the reader is gone); the unwritten
//  bytes stay queued.
int pf_frame_writer_flush (pf_frame_writer_t *self, int fd);

//  True while bytes are queued.
bool pf_frame_writer_pending (pf_frame_writer_t *self);

//  Bytes queued and not yet written.
size_t pf_frame_writer_pending_bytes (pf_frame_writer_t *self);

//  Drops every queued byte (the fd is gone).
void pf_frame_writer_clear (pf_frame_writer_t *self);

#endif
