/* The per-copy work of the forwarding path (issue 15): for each copy of a packet, the
 * subscriber's 12-byte header written in front of the shared bytes, its transport-wide
 * sequence number written in place, SRTP protect through the libsrtp that pylibsrtp
 * already loaded (its srtp_protect and the session's srtp_t handed in as addresses), and
 * queued; a flush sends what is queued with one sendmmsg per run of copies on the same
 * socket.
 *
 * Python decides everything (which copies, which numbers); this file only writes bytes.
 * Every length is checked here as well as in Python: a caller's mistake is an error code,
 * never a write outside a slot. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define CC_SLOTS 64              /* copies queued before a flush is forced */
#define CC_SLOT_BYTES 2048       /* one datagram and its SRTP trailer */
#define CC_SRTP_MAX_IN (1500 - 144)  /* what FastSrtp accepts (pylibsrtp's SRTP_MAX_TRAILER_LEN) */

typedef int (*cc_protect_fn)(void *ctx, void *rtp, int *len);

struct cc_batch {
    cc_protect_fn protect;
    int count;
    int unsent;                  /* copies the kernel refused with EAGAIN (front of the arrays after a flush) */
    long send_errors;            /* other send errors: dropped, as the Python path drops them */
    int fds[CC_SLOTS];
    struct sockaddr_storage addrs[CC_SLOTS];
    struct iovec iovs[CC_SLOTS];
    struct mmsghdr msgs[CC_SLOTS];
    unsigned char slots[CC_SLOTS][CC_SLOT_BYTES];
};

/* Where one transport sends: made once when its address, socket or SRTP session change,
 * so that a copy names it with one pointer instead of four arguments. */
struct cc_route {
    int fd;
    int addrlen;
    uintptr_t srtp;  /* srtp_t, 0: plain RTP */
    struct sockaddr_storage addr;
};

struct cc_route *cc_route_new(int fd, const char *addr, int addrlen, uintptr_t srtp)
{
    if (fd < 0 || addr == NULL || addrlen <= 0 || addrlen > (int)sizeof(struct sockaddr_storage))
        return NULL;
    struct cc_route *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->fd = fd;
    r->addrlen = addrlen;
    r->srtp = srtp;
    memcpy(&r->addr, addr, (size_t)addrlen);
    return r;
}

void cc_route_free(struct cc_route *r)
{
    free(r);
}

struct cc_batch *cc_batch_new(uintptr_t protect_fn)
{
    struct cc_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->protect = (cc_protect_fn)protect_fn;
    return b;
}

void cc_batch_free(struct cc_batch *b)
{
    free(b);
}

static void put_u16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* The slot the next copy goes in, or NULL when all are taken (Python flushes, then
 * tries again). */
static unsigned char *next_slot(struct cc_batch *b)
{
    return b->count < CC_SLOTS ? b->slots[b->count] : NULL;
}

/* Protect the next slot's `len` bytes (for an SRTP route) and queue it on the route.
 * Returns the length queued, or a negative error. */
static int queue(struct cc_batch *b, const struct cc_route *r, int len)
{
    int index = b->count;
    if (r->srtp != 0) {
        int out = len;
        int status = b->protect((void *)r->srtp, b->slots[index], &out);
        if (status != 0)
            return -100 - status;
        len = out;
    }
    memcpy(&b->addrs[index], &r->addr, (size_t)r->addrlen);
    b->fds[index] = r->fd;
    b->iovs[index].iov_base = b->slots[index];
    b->iovs[index].iov_len = (size_t)len;
    memset(&b->msgs[index], 0, sizeof(b->msgs[index]));
    b->msgs[index].msg_hdr.msg_name = &b->addrs[index];
    b->msgs[index].msg_hdr.msg_namelen = (socklen_t)r->addrlen;
    b->msgs[index].msg_hdr.msg_iov = &b->iovs[index];
    b->msgs[index].msg_hdr.msg_iovlen = 1;
    b->count = index + 1;
    return len;
}

static int check_length(const struct cc_route *r, long total)
{
    if (r == NULL)
        return -2;
    if (total < 0 || total > (r->srtp ? CC_SRTP_MAX_IN : CC_SLOT_BYTES))
        return -1;
    return 0;
}

/* One copy whose bytes Python made (RTX, NACK answers, padding): protect and queue. */
int cc_send(struct cc_batch *b, const struct cc_route *r, const char *data, int len)
{
    int error = check_length(r, len);
    if (error)
        return error;
    if (data == NULL && len > 0)
        return -1;
    unsigned char *slot = next_slot(b);
    if (slot == NULL)
        return -5;
    if (len > 0)
        memcpy(slot, data, (size_t)len);
    return queue(b, r, len);
}

static void put_header(unsigned char *slot, unsigned first, unsigned seq, uint32_t ts, uint32_t ssrc)
{
    put_u16(slot, first);
    put_u16(slot + 2, seq);
    put_u32(slot + 4, ts);
    put_u32(slot + 8, ssrc);
}

/* One copy rewritten here: the header (first 16 bits: V/P/X/CC, marker and payload
 * type; sequence number; timestamp; SSRC), then `a` (everything after the fixed header
 * as the subscriber's extmap numbers it); with tcc_at >= 0 the transport-wide sequence
 * number is written at offset tcc_at of `a`. */
int cc_send_header(struct cc_batch *b, const struct cc_route *r, unsigned first, unsigned seq, uint32_t ts,
                   uint32_t ssrc, const char *a, int alen, int tcc_at, unsigned tcc_seq)
{
    if (alen < 0 || (a == NULL && alen))
        return -1;
    int error = check_length(r, 12L + alen);
    if (error)
        return error;
    if (tcc_at >= 0 && (long)tcc_at + 2 > alen)
        return -4;
    unsigned char *slot = next_slot(b);
    if (slot == NULL)
        return -5;
    put_header(slot, first, seq, ts, ssrc);
    if (alen) {
        memcpy(slot + 12, a, (size_t)alen);
        if (tcc_at >= 0)
            put_u16(slot + 12 + tcc_at, tcc_seq);
    }
    return queue(b, r, 12 + alen);
}

/* cc_send_header with two more parts after `a`: `c` (a simulcast consumer's own codec
 * bytes: VP8 PictureID, TL0PICIDX) and `t` (the rest of the payload). */
int cc_send_rewritten(struct cc_batch *b, const struct cc_route *r, unsigned first, unsigned seq, uint32_t ts,
                      uint32_t ssrc, const char *a, int alen, int tcc_at, unsigned tcc_seq,
                      const char *c, int clen, const char *t, int tlen)
{
    if (alen < 0 || clen < 0 || tlen < 0)
        return -1;
    if ((a == NULL && alen) || (c == NULL && clen) || (t == NULL && tlen))
        return -1;
    long total = 12L + alen + clen + tlen;
    int error = check_length(r, total);
    if (error)
        return error;
    if (tcc_at >= 0 && (long)tcc_at + 2 > alen)
        return -4;
    unsigned char *slot = next_slot(b);
    if (slot == NULL)
        return -5;
    put_header(slot, first, seq, ts, ssrc);
    unsigned char *p = slot + 12;
    if (alen) {
        memcpy(p, a, (size_t)alen);
        if (tcc_at >= 0)
            put_u16(p + tcc_at, tcc_seq);
        p += alen;
    }
    if (clen) {
        memcpy(p, c, (size_t)clen);
        p += clen;
    }
    if (tlen)
        memcpy(p, t, (size_t)tlen);
    return queue(b, r, (int)total);
}

/* Send what is queued: one sendmmsg per run of copies on the same socket. Copies the
 * kernel refuses with EAGAIN stay queued, moved to the front (returned: Python hands
 * them to the event loop's transport, which queues them); other errors drop the copy. */
int cc_flush(struct cc_batch *b)
{
    int n = b->count, i = 0, kept = 0;
    while (i < n) {
        int fd = b->fds[i], run = 1;
        while (i + run < n && b->fds[i + run] == fd)
            run++;
        int done = 0;
        while (done < run) {
            int sent;
            if (run - done == 1) {  /* one copy on this socket: sendto is the kernel's cheaper path */
                struct msghdr *m = &b->msgs[i + done].msg_hdr;
                sent = sendto(fd, m->msg_iov->iov_base, m->msg_iov->iov_len, 0, m->msg_name, m->msg_namelen) < 0 ? -1 : 1;
            } else {
                sent = sendmmsg(fd, &b->msgs[i + done], (unsigned)(run - done), 0);
            }
            if (sent > 0) {
                done += sent;
            } else if (sent < 0 && errno == EINTR) {
                continue;
            } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                for (; done < run; done++, kept++) {
                    int from = i + done;
                    if (kept != from) {
                        memcpy(b->slots[kept], b->slots[from], b->iovs[from].iov_len);
                        b->addrs[kept] = b->addrs[from];
                        b->fds[kept] = b->fds[from];
                        b->iovs[kept].iov_len = b->iovs[from].iov_len;
                        b->msgs[kept].msg_hdr.msg_namelen = b->msgs[from].msg_hdr.msg_namelen;
                    }
                    b->iovs[kept].iov_base = b->slots[kept];
                    b->msgs[kept].msg_hdr.msg_name = &b->addrs[kept];
                    b->msgs[kept].msg_hdr.msg_iov = &b->iovs[kept];
                }
            } else {
                b->send_errors++;
                done++;  /* the first message failed: drop it, send the rest */
            }
        }
        i += run;
    }
    b->count = kept;
    b->unsent = kept;
    return kept;
}

/* Copy `index` of those the kernel refused: its socket, bytes and address (Python sends
 * them through the event loop, then calls cc_clear). */
int cc_unsent(struct cc_batch *b, int index, int *fd, const char **data, const char **addr, int *addrlen)
{
    if (index < 0 || index >= b->unsent)
        return -1;
    *fd = b->fds[index];
    *data = (const char *)b->slots[index];
    *addr = (const char *)&b->addrs[index];
    *addrlen = (int)b->msgs[index].msg_hdr.msg_namelen;
    return (int)b->iovs[index].iov_len;
}

int cc_count(struct cc_batch *b)
{
    return b->count;
}

void cc_clear(struct cc_batch *b)
{
    b->count = 0;
    b->unsent = 0;
}

long cc_send_errors(struct cc_batch *b)
{
    return b->send_errors;
}
