/*  pf_stream_server — the broker's clients on a Unix stream socket. See
    pf_stream_server.h. */
#define _GNU_SOURCE //  accept4
#include "pf_stream_server.h"
#include "pf_log.h"
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROUTING_ID_SIZE 10
//  Connections accepted per loop turn, so a flood of them cannot starve it.
#define ACCEPT_BATCH 64
//  Out of descriptors (or memory), the listener is not polled for this long:
//  its waiting connection would wake every poll at once. At most one warning
//  per WARN_EVERY_MS says so.
#define ACCEPT_PAUSE_MS 100
#define WARN_EVERY_MS   10000

typedef struct {
    pf_stream_t stream; //  fd -1 while the slot is free
    uint32_t generation; //  bumped each time the slot is reused
} client_t;

struct pf_stream_server_s {
    char *path;
    int listener;
    size_t max_body;
    client_t *clients; //  slots; a routing id names slot and generation
    size_t slots, alloc;
    size_t polled[PF_STREAM_MAX_CLIENTS]; //  the slot of each poll item after the listener's
    int64_t accept_at;  //  zclock_mono () ms: accepting paused until then
    int64_t warned_at;  //  last warning about accepting, 0 if none
    //  Connections closed since the broker last heard of it: (slot,
    //  generation) pairs. A slot closes at most once between two accepts.
    uint32_t gone[PF_STREAM_MAX_CLIENTS][2];
    size_t gone_count;
    size_t live; //  connections open
};

pf_stream_server_t *pf_stream_server_new (const char *path, size_t max_body)
{
    pf_stream_server_t *self = calloc (1, sizeof *self);
    if (!self) return NULL;
    self->path = strdup (path);
    self->max_body = max_body;
    self->listener = self->path ? pf_stream_listen (path) : -1;
    if (self->listener < 0) {
        int error = self->path ? errno : ENOMEM;
        free (self->path);
        free (self);
        errno = error;
        return NULL;
    }
    return self;
}

//  The routing id of (slot, generation): 0x00 'U', then both as u32.
static zframe_t *routing_id_of (size_t slot, uint32_t generation)
{
    byte id[ROUTING_ID_SIZE] = {0, 'U'};
    pf_write_be (id + 2, 4, slot);
    pf_write_be (id + 6, 4, generation);
    return zframe_new (id, sizeof id);
}

static void client_close (pf_stream_server_t *self, client_t *client)
{
    if (client->stream.fd < 0) return;
    pf_stream_close (&client->stream);
    self->live--;
    self->gone[self->gone_count][0] = (uint32_t)(client - self->clients);
    self->gone[self->gone_count++][1] = client->generation++;
}

void pf_stream_server_destroy (pf_stream_server_t **self_p)
{
    pf_stream_server_t *self = *self_p;
    if (!self) return;
    for (size_t slot = 0; slot < self->slots; slot++)
        pf_stream_close (&self->clients[slot].stream);
    free (self->clients);
    close (self->listener);
    unlink (self->path);
    free (self->path);
    free (self);
    *self_p = NULL;
}

bool pf_stream_server_owns (zframe_t *routing_id)
{
    const byte *data = zframe_data (routing_id);
    return zframe_size (routing_id) == ROUTING_ID_SIZE && data[0] == 0 && data[1] == 'U';
}

static client_t *client_of (pf_stream_server_t *self, zframe_t *routing_id)
{
    if (!pf_stream_server_owns (routing_id)) return NULL;
    const byte *data = zframe_data (routing_id);
    size_t slot = (size_t)pf_read_be (data + 2, 4);
    if (slot >= self->slots) return NULL;
    client_t *client = &self->clients[slot];
    bool live = client->stream.fd >= 0 && client->generation == pf_read_be (data + 6, 4);
    return live ? client : NULL;
}

int pf_stream_server_send (pf_stream_server_t *self, zframe_t *routing_id, pf_msg_t *msg)
{
    client_t *client = client_of (self, routing_id);
    if (!client) return -1;
    if (pf_stream_put (&client->stream, msg) == 0) return 0;
    if (errno == ENOBUFS) {
        pf_warn ("a unix:// client has %zu bytes unread: connection closed",
                 pf_stream_pending (&client->stream));
        client_close (self, client);
    }
    return -1;
}

void pf_stream_server_flush (pf_stream_server_t *self)
{
    for (size_t slot = 0; slot < self->slots; slot++) {
        client_t *client = &self->clients[slot];
        if (client->stream.fd >= 0 && pf_stream_flush (&client->stream) < 0)
            client_close (self, client);
    }
}

size_t pf_stream_server_prepare (pf_stream_server_t *self, zmq_pollitem_t *items, size_t max)
{
    pf_stream_server_flush (self);
    size_t count = 0;
    //  (The clock is read only while accepting is paused.)
    short accepting = ZMQ_POLLIN;
    if (self->accept_at && zclock_mono () < self->accept_at)
        accepting = 0;
    else
        self->accept_at = 0;
    if (max) items[count++] = (zmq_pollitem_t){NULL, self->listener, accepting, 0};
    for (size_t slot = 0; slot < self->slots && count < max; slot++) {
        client_t *client = &self->clients[slot];
        if (client->stream.fd < 0) continue;
        short events = ZMQ_POLLIN | (pf_stream_pending (&client->stream) ? ZMQ_POLLOUT : 0);
        self->polled[count - 1] = slot;
        items[count++] = (zmq_pollitem_t){NULL, client->stream.fd, events, 0};
    }
    return count;
}

//  A free slot (growing the table); NULL if there is none to be had.
static client_t *free_slot (pf_stream_server_t *self)
{
    for (size_t slot = 0; slot < self->slots; slot++)
        if (self->clients[slot].stream.fd < 0) return &self->clients[slot];
    if (self->slots == PF_STREAM_MAX_CLIENTS) return NULL;
    if (self->slots == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 16;
        client_t *clients = realloc (self->clients, alloc * sizeof *clients);
        if (!clients) return NULL;
        self->clients = clients;
        self->alloc = alloc;
    }
    client_t *client = &self->clients[self->slots++];
    client->generation = 0;
    client->stream.fd = -1;
    return client;
}

static void accept_clients (pf_stream_server_t *self)
{
    for (int count = 0; count < ACCEPT_BATCH; count++) {
        int fd = accept4 (self->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                       errno == ECONNABORTED))
            return;
        if (fd < 0) {
            int64_t now = zclock_mono ();
            self->accept_at = now + ACCEPT_PAUSE_MS;
            if (!self->warned_at || now - self->warned_at >= WARN_EVERY_MS) {
                pf_warn ("unix:// accept: %s; new connections wait", strerror (errno));
                self->warned_at = now;
            }
            return;
        }
        client_t *client = free_slot (self);
        if (!client) {
            pf_warn ("unix:// client refused: %d connections already", PF_STREAM_MAX_CLIENTS);
            close (fd);
            continue;
        }
        pf_stream_init (&client->stream, fd, self->max_body);
        self->live++;
    }
}

//  Reads once from a connection and hands every whole message to the broker.
static void read_client (pf_stream_server_t *self, client_t *client, pf_broker_t *broker)
{
    ssize_t got = pf_stream_fill (&client->stream);
    bool broken = got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    uint32_t generation = client->generation;
    zframe_t *routing_id = routing_id_of ((size_t)(client - self->clients), generation);
    pf_msg_t msg;
    pf_msg_init (&msg);
    char err[256];
    int rc;
    //  The broker may close this connection while it handles a message (an
    //  answer it cannot take): stop reading it then.
    while (client->stream.fd >= 0 && client->generation == generation &&
           (rc = pf_stream_next (&client->stream, &msg, err, sizeof err)) != -1)
        pf_broker_handle_msg (broker, routing_id, rc, &msg, err, zclock_mono ());
    if (client->stream.fd >= 0 && client->generation == generation && errno == EPROTO) {
        pf_warn ("unix:// client dropped: %s", err);
        broken = true;
    }
    zframe_destroy (&routing_id);
    pf_msg_reset (&msg);
    if (broken && client->generation == generation) client_close (self, client);
}

void pf_stream_server_handle (pf_stream_server_t *self, zmq_pollitem_t *items, size_t count,
                              pf_broker_t *broker)
{
    for (size_t item = 1; item < count; item++) {
        client_t *client = &self->clients[self->polled[item - 1]];
        short revents = items[item].revents;
        //  (Closed since the poll, while the broker answered another one.)
        if (client->stream.fd != items[item].fd) continue;
        if (revents & ZMQ_POLLOUT && pf_stream_flush (&client->stream) < 0)
            client_close (self, client);
        if (client->stream.fd >= 0 && revents & (ZMQ_POLLIN | ZMQ_POLLERR))
            read_client (self, client, broker);
    }
    //  No answer can reach a closed connection: its requests are cancelled.
    for (size_t index = 0; index < self->gone_count; index++) {
        zframe_t *routing_id = routing_id_of (self->gone[index][0], self->gone[index][1]);
        size_t cancelled = pf_broker_client_gone (broker, routing_id, zclock_mono ());
        if (cancelled)
            pf_info ("a unix:// client left with %zu requests unanswered: cancelled", cancelled);
        zframe_destroy (&routing_id);
    }
    self->gone_count = 0;
    if (count && items[0].revents & ZMQ_POLLIN) accept_clients (self);
    pf_broker_set_unix_clients (broker, self->live);
}
