/*  pf_stream — the native client protocol (PFC1) over a Unix stream socket:
    the broker's direct transport for clients on its own host (unix://PATH).

    A ZeroMQ message between two processes wakes the sender's I/O thread,
    the receiver's I/O thread and the receiving thread; over this socket the
    client's own thread writes and the broker's loop reads, so a request and
    its answer cost four thread wake-ups fewer (docs/PERFORMANCE.md). The
    stream carries, in both directions, what a BATCH's messages frame
    carries (docs/PROTOCOL.md 6): entries of a u32 big-endian length and
    then one packed PFC1 message (pf_msg_pack). There is no BATCH command on
    a stream: a write of many entries is the batch.

    Bounded both ways. A reader holds at most one entry of max_body plus its
    head; an entry longer than that is refused with PF_TOO_LARGE and the
    request id it names, and its bytes are skipped unread into memory, so
    the stream goes on. A writer holds at most PF_STREAM_MAX_PENDING bytes
    (or one entry, if larger) that the peer has not read. A length that
    cannot start a PFC1 entry (an unknown command byte) means the two ends
    no longer agree where entries start: the stream must be closed. */
#ifndef PF_STREAM_H_INCLUDED
#define PF_STREAM_H_INCLUDED

#include "pf_batch.h"
#include "pf_proto.h"

#define PF_STREAM_SCHEME "unix://"
//  Unread bytes a writer keeps for its peer before pf_stream_put refuses.
#define PF_STREAM_MAX_PENDING (64u * 1024 * 1024)
//  A packed PFC1 message holds at most this much besides its opaque fields.
#define PF_STREAM_MAX_HEAD (1 + 8 + 4 + 4 + 2 + 3 * (1 + PF_MAX_NAME) + 2 + PF_MAX_MESSAGE + 3 * 4)

typedef struct {
    int fd;          //  -1 once closed
    size_t max_body; //  for entries read
    byte *in;        //  bytes read, entries from in_start to in_end
    size_t in_start, in_end, in_alloc;
    size_t skip;     //  bytes of a refused entry still to discard
    byte *out;       //  bytes to write, from out_start to out_end
    size_t out_start, out_end, out_alloc;
} pf_stream_t;

//  The path of a unix:// endpoint, or NULL if endpoint is not one.
const char *pf_stream_path (const char *endpoint);

//  True if path can name a socket (1..107 bytes on Linux).
bool pf_stream_path_valid (const char *path);

//  Binds and listens on path (non-blocking, close-on-exec). A socket file
//  left there by a process that is gone is replaced; one that a live
//  process listens on is not (EADDRINUSE). Returns the descriptor, or -1
//  with errno.
int pf_stream_listen (const char *path);

//  Connects to path without blocking. Returns the descriptor, or -1 with
//  errno (ENOENT, ECONNREFUSED: no one listens; EAGAIN: the listener's
//  backlog is full, try again).
int pf_stream_connect (const char *path);

//  Starts a stream on a connected descriptor, which it then owns.
//  max_body 0 means PF_DEFAULT_MAX_BODY.
void pf_stream_init (pf_stream_t *self, int fd, size_t max_body);

//  Closes the descriptor and frees the buffers; unsent bytes are lost.
//  Safe to call twice.
void pf_stream_close (pf_stream_t *self);

//  Appends msg, packed, to the bytes to write (msg is not changed). Returns
//  0, or -1 with errno: EINVAL if msg cannot be packed (not PFC1, a BATCH,
//  a field over its limits), ENOBUFS if the peer has not read what it was
//  sent (PF_STREAM_MAX_PENDING), ENOMEM.
int pf_stream_put (pf_stream_t *self, const pf_msg_t *msg);

//  Appends the entries of a PFC1 batch as they are (its data is the stream's
//  format). Same result as pf_stream_put.
int pf_stream_put_batch (pf_stream_t *self, const pf_batch_t *batch);

//  Writes what the socket takes without blocking. Returns 0 if nothing is
//  left to write, 1 if some is (wait for POLLOUT), -1 with errno if the
//  connection is broken (EPIPE, ECONNRESET...).
int pf_stream_flush (pf_stream_t *self);

//  Bytes put and not yet written.
size_t pf_stream_pending (const pf_stream_t *self);

//  Reads what the socket has without blocking. Returns the number of bytes
//  read (> 0), 0 at end of stream, or -1 with errno (EAGAIN: nothing to read
//  now; any other: the connection is broken).
ssize_t pf_stream_fill (pf_stream_t *self);

//  Decodes the next whole entry read so far into msg (reset first). Returns
//  PF_OK, or PF_BAD_REQUEST / PF_TOO_LARGE with err set and, when it could
//  be read, the request id in msg (as pf_msg_unpack) — the stream goes on —
//  or -1 with errno: EAGAIN if no whole entry is there yet, EPROTO if the
//  bytes cannot be an entry (err says why): close the stream.
int pf_stream_next (pf_stream_t *self, pf_msg_t *msg, char *err, size_t errlen);

#endif
