/*  test_frame — the bridge framing: reader state machine fed any split of
    bytes, the max_frame fault without allocation, and the writer queue over a
    real pipe small enough to force partial writes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "pf_frame.h"

//  Appends one encoded frame (prefix + payload of `size` bytes, byte i = seed + i).
static size_t s_encode (uint8_t *out, size_t size, uint8_t seed)
{
    out[0] = (uint8_t)(size >> 24);
    out[1] = (uint8_t)(size >> 16);
    out[2] = (uint8_t)(size >> 8);
    out[3] = (uint8_t)size;
    for (size_t i = 0; i < size; i++)
        out[4 + i] = (uint8_t)(seed + i);
    return 4 + size;
}

static void s_expect_frame (pf_frame_reader_t *reader, size_t size, uint8_t seed)
{
    size_t got_size = 12345;
    uint8_t *frame = pf_frame_reader_pop (reader, &got_size);
    assert_non_null (frame);
    assert_int_equal (got_size, size);
    for (size_t i = 0; i < size; i++)
        if (frame[i] != (uint8_t)(seed + i))
            fail_msg ("byte %zu of a %zu-byte frame differs", i, size);
    free (frame);
}

static void reader_assembles_frames_fed_one_byte_at_a_time (void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 3, 4, 5, 300, 70000};
    const size_t count = sizeof sizes / sizeof sizes[0];
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += 4 + sizes[i];
    uint8_t *stream = malloc (total);
    size_t *ends = malloc (count * sizeof *ends);
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        at += s_encode (stream + at, sizes[i], (uint8_t)i);
        ends[i] = at;
    }
    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    size_t next = 0;
    for (size_t i = 0; i < total; i++) {
        assert_int_equal (pf_frame_reader_feed (reader, stream + i, 1), 0);
        if (i + 1 == ends[next]) {
            assert_int_equal (pf_frame_reader_frames (reader), 1);
            s_expect_frame (reader, sizes[next], (uint8_t)next);
            next++;
        } else
            assert_null (pf_frame_reader_pop (reader, NULL));
    }
    assert_int_equal (next, count);
    assert_int_equal (pf_frame_reader_buffered (reader), 0);
    pf_frame_reader_destroy (&reader);
    assert_null (reader);
    pf_frame_reader_destroy (&reader); //  safe twice
    free (stream);
    free (ends);
}

static void reader_splits_many_frames_from_one_chunk (void **state)
{
    (void)state;
    const size_t count = 1000;
    uint8_t *stream = malloc (count * (4 + 64));
    size_t at = 0;
    for (size_t i = 0; i < count; i++)
        at += s_encode (stream + at, i % 65, (uint8_t)i);
    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    assert_int_equal (pf_frame_reader_feed (reader, stream, at), 0);
    assert_int_equal (pf_frame_reader_frames (reader), count);
    for (size_t i = 0; i < count; i++)
        s_expect_frame (reader, i % 65, (uint8_t)i);
    assert_null (pf_frame_reader_pop (reader, NULL));
    pf_frame_reader_destroy (&reader);
    free (stream);
}

static void reader_feeds_split_at_every_boundary_of_two_frames (void **state)
{
    (void)state;
    uint8_t stream[4 + 9 + 4 + 0 + 4 + 2];
    size_t at = s_encode (stream, 9, 7);
    at += s_encode (stream + at, 0, 0);
    at += s_encode (stream + at, 2, 200);
    for (size_t cut = 0; cut <= at; cut++) {
        pf_frame_reader_t *reader = pf_frame_reader_new (16);
        assert_int_equal (pf_frame_reader_feed (reader, stream, cut), 0);
        assert_int_equal (pf_frame_reader_feed (reader, stream + cut, at - cut), 0);
        assert_int_equal (pf_frame_reader_frames (reader), 3);
        s_expect_frame (reader, 9, 7);
        s_expect_frame (reader, 0, 0);
        s_expect_frame (reader, 2, 200);
        pf_frame_reader_destroy (&reader);
    }
}

static void zero_length_frame_is_a_frame_of_size_zero (void **state)
{
    (void)state;
    const uint8_t zero[4] = {0, 0, 0, 0};
    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    assert_int_equal (pf_frame_reader_feed (reader, zero, 4), 0);
    size_t size = 99;
    uint8_t *frame = pf_frame_reader_pop (reader, &size);
    assert_non_null (frame);
    assert_int_equal (size, 0);
    free (frame);
    assert_false (pf_frame_reader_failed (reader));
    pf_frame_reader_destroy (&reader);
}

static void frame_of_exactly_max_frame_is_accepted (void **state)
{
    (void)state;
    const size_t max_frame = 200000;
    uint8_t *stream = malloc (4 + max_frame);
    s_encode (stream, max_frame, 3);
    pf_frame_reader_t *reader = pf_frame_reader_new (max_frame);
    for (size_t at = 0; at < 4 + max_frame; at += 4096) {
        size_t take = 4 + max_frame - at < 4096 ? 4 + max_frame - at : 4096;
        assert_int_equal (pf_frame_reader_feed (reader, stream + at, take), 0);
    }
    assert_false (pf_frame_reader_failed (reader));
    s_expect_frame (reader, max_frame, 3);
    pf_frame_reader_destroy (&reader);
    free (stream);
}

static void announced_length_is_not_allocated_before_the_bytes_arrive (void **state)
{
    (void)state;
    //  A legal but huge announcement (64 MiB) followed by 10 bytes.
    const uint8_t header[4] = {0x04, 0x00, 0x00, 0x00};
    const uint8_t body[10] = {0};
    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    assert_int_equal (pf_frame_reader_feed (reader, header, 4), 0);
    assert_int_equal (pf_frame_reader_buffered (reader), 0);
    assert_int_equal (pf_frame_reader_feed (reader, body, sizeof body), 0);
    assert_true (pf_frame_reader_buffered (reader) <= 64 * 1024);
    assert_int_equal (pf_frame_reader_frames (reader), 0);
    pf_frame_reader_destroy (&reader);
}

static void length_above_max_frame_is_a_fault_without_allocation (void **state)
{
    (void)state;
    const size_t max_frame = 1000;
    uint8_t stream[4 + 5 + 4];
    size_t at = s_encode (stream, 5, 1);
    const uint32_t bad = (uint32_t)max_frame + 1; //  header only, no body follows
    stream[at++] = (uint8_t)(bad >> 24);
    stream[at++] = (uint8_t)(bad >> 16);
    stream[at++] = (uint8_t)(bad >> 8);
    stream[at++] = (uint8_t)bad;
    pf_frame_reader_t *reader = pf_frame_reader_new (max_frame);
    assert_int_equal (pf_frame_reader_feed (reader, stream, at), -1);
    assert_true (pf_frame_reader_failed (reader));
    assert_int_equal (pf_frame_reader_bad_length (reader), max_frame + 1);
    //  Only the good frame before the fault is held.
    assert_int_equal (pf_frame_reader_buffered (reader), 5);
    s_expect_frame (reader, 5, 1);
    assert_int_equal (pf_frame_reader_buffered (reader), 0);
    //  The fault is sticky: no resync on later bytes.
    uint8_t good[4 + 1];
    s_encode (good, 1, 0);
    assert_int_equal (pf_frame_reader_feed (reader, good, sizeof good), -1);
    assert_null (pf_frame_reader_pop (reader, NULL));
    pf_frame_reader_destroy (&reader);
}

static void length_0xffffffff_is_a_fault_without_allocation (void **state)
{
    (void)state;
    const uint8_t header[4] = {0xff, 0xff, 0xff, 0xff};
    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    //  Fed in two pieces: the fault fires when the fourth byte arrives.
    assert_int_equal (pf_frame_reader_feed (reader, header, 3), 0);
    assert_false (pf_frame_reader_failed (reader));
    assert_int_equal (pf_frame_reader_feed (reader, header + 3, 1), -1);
    assert_true (pf_frame_reader_failed (reader));
    assert_int_equal (pf_frame_reader_bad_length (reader), 0xffffffffu);
    assert_int_equal (pf_frame_reader_buffered (reader), 0);
    pf_frame_reader_destroy (&reader);
}

//  Writer over a real pipe shrunk to one page, so every large frame needs
//  many partial writes, each resumed by the next flush.
static void writer_resumes_partial_writes_until_every_frame_is_through (void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal (pipe2 (fds, O_CLOEXEC | O_NONBLOCK), 0);
    assert_true (fcntl (fds[1], F_SETPIPE_SZ, 4096) >= 4096);

    pf_frame_writer_t *writer = pf_frame_writer_new ();
    const size_t sizes[] = {10, 300000, 0, 5000};
    const size_t count = sizeof sizes / sizeof sizes[0];
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t *payload = malloc (sizes[i] + 4);
        s_encode (payload, sizes[i], (uint8_t)(i * 50));
        assert_int_equal (pf_frame_writer_push (writer, payload + 4, sizes[i]), 0);
        total += 4 + sizes[i];
        free (payload);
    }
    assert_int_equal (pf_frame_writer_pending_bytes (writer), total);

    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    uint8_t buffer[1500];
    int flushes = 0;
    while (pf_frame_writer_pending (writer)) {
        size_t before = pf_frame_writer_pending_bytes (writer);
        assert_int_equal (pf_frame_writer_flush (writer, fds[1]), 0);
        assert_true (pf_frame_writer_pending_bytes (writer) < before);
        flushes++;
        assert_true (flushes < 10000);
        //  Drain the pipe in small reads, as a slow peer would.
        ssize_t got;
        while ((got = read (fds[0], buffer, sizeof buffer)) > 0)
            assert_int_equal (pf_frame_reader_feed (reader, buffer, (size_t)got), 0);
        assert_true (got < 0 && errno == EAGAIN);
    }
    assert_true (flushes > 70); //  300 KB through a 4 KB pipe
    assert_int_equal (pf_frame_writer_pending_bytes (writer), 0);
    ssize_t got;
    while ((got = read (fds[0], buffer, sizeof buffer)) > 0)
        assert_int_equal (pf_frame_reader_feed (reader, buffer, (size_t)got), 0);
    assert_int_equal (pf_frame_reader_frames (reader), count);
    for (size_t i = 0; i < count; i++)
        s_expect_frame (reader, sizes[i], (uint8_t)(i * 50));

    pf_frame_reader_destroy (&reader);
    pf_frame_writer_destroy (&writer);
    assert_null (writer);
    close (fds[0]);
    close (fds[1]);
}

//  Many small frames queued leave in one flush (writev, 64 at a time), in
//  order, when the pipe has room.
static void writer_flushes_a_burst_of_small_frames_at_once (void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal (pipe2 (fds, O_CLOEXEC | O_NONBLOCK), 0);
    pf_frame_writer_t *writer = pf_frame_writer_new ();
    const size_t count = 150;
    for (size_t i = 0; i < count; i++) {
        uint8_t payload[4 + 100];
        s_encode (payload, 100, (uint8_t)i);
        assert_int_equal (pf_frame_writer_push (writer, payload + 4, 100), 0);
    }
    assert_int_equal (pf_frame_writer_flush (writer, fds[1]), 0);
    assert_false (pf_frame_writer_pending (writer));
    pf_frame_reader_t *reader = pf_frame_reader_new (0);
    uint8_t buffer[65536];
    ssize_t got = read (fds[0], buffer, sizeof buffer);
    assert_int_equal (got, (ssize_t)(count * 104));
    assert_int_equal (pf_frame_reader_feed (reader, buffer, (size_t)got), 0);
    assert_int_equal (pf_frame_reader_frames (reader), count);
    for (size_t i = 0; i < count; i++)
        s_expect_frame (reader, 100, (uint8_t)i);
    pf_frame_reader_destroy (&reader);
    pf_frame_writer_destroy (&writer);
    close (fds[0]);
    close (fds[1]);
}

static void writer_reports_a_broken_pipe_as_epipe_and_keeps_the_bytes (void **state)
{
    (void)state;
    struct sigaction ignore = {.sa_handler = SIG_IGN}, previous;
    sigaction (SIGPIPE, &ignore, &previous);
    int fds[2];
    assert_int_equal (pipe2 (fds, O_CLOEXEC | O_NONBLOCK), 0);
    close (fds[0]);
    pf_frame_writer_t *writer = pf_frame_writer_new ();
    assert_int_equal (pf_frame_writer_push (writer, "abc", 3), 0);
    errno = 0;
    assert_int_equal (pf_frame_writer_flush (writer, fds[1]), -1);
    assert_int_equal (errno, EPIPE);
    assert_int_equal (pf_frame_writer_pending_bytes (writer), 7);
    pf_frame_writer_clear (writer);
    assert_false (pf_frame_writer_pending (writer));
    pf_frame_writer_destroy (&writer);
    close (fds[1]);
    sigaction (SIGPIPE, &previous, NULL);
}

static void writer_rejects_a_frame_that_does_not_fit_the_length_prefix (void **state)
{
    (void)state;
    if (sizeof (size_t) <= 4) skip ();
    pf_frame_writer_t *writer = pf_frame_writer_new ();
    //  Rejected on size alone, before the (unreadable) data is touched.
    assert_int_equal (pf_frame_writer_push (writer, "", (size_t)UINT32_MAX + 1), -1);
    assert_false (pf_frame_writer_pending (writer));
    pf_frame_writer_destroy (&writer);
}

int main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (reader_assembles_frames_fed_one_byte_at_a_time),
        cmocka_unit_test (reader_splits_many_frames_from_one_chunk),
        cmocka_unit_test (reader_feeds_split_at_every_boundary_of_two_frames),
        cmocka_unit_test (zero_length_frame_is_a_frame_of_size_zero),
        cmocka_unit_test (frame_of_exactly_max_frame_is_accepted),
        cmocka_unit_test (announced_length_is_not_allocated_before_the_bytes_arrive),
        cmocka_unit_test (length_above_max_frame_is_a_fault_without_allocation),
        cmocka_unit_test (length_0xffffffff_is_a_fault_without_allocation),
        cmocka_unit_test (writer_resumes_partial_writes_until_every_frame_is_through),
        cmocka_unit_test (writer_flushes_a_burst_of_small_frames_at_once),
        cmocka_unit_test (writer_reports_a_broken_pipe_as_epipe_and_keeps_the_bytes),
        cmocka_unit_test (writer_rejects_a_frame_that_does_not_fit_the_length_prefix),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
