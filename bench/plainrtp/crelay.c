/* The kernel's floor for the fan-out bench (issue 15): recvmmsg what is queued, then for
 * each datagram one sendmmsg of its K copies (the same bytes to K receivers). No parsing,
 * no SRTP, no counters. Runs until the process is killed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define BATCH 64
#define MAX_DESTS 64
#define SLOT 2048

int crelay_run(int fd, const struct sockaddr_in *dests, int ndests)
{
    static unsigned char bufs[BATCH][SLOT];
    static struct iovec riov[BATCH];
    static struct mmsghdr rmsg[BATCH];
    static struct iovec siov[MAX_DESTS];
    static struct mmsghdr smsg[MAX_DESTS];
    if (ndests < 1 || ndests > MAX_DESTS)
        return -1;
    for (int i = 0; i < BATCH; i++) {
        riov[i].iov_base = bufs[i];
        riov[i].iov_len = SLOT;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    for (int k = 0; k < ndests; k++) {
        memset(&smsg[k], 0, sizeof(smsg[k]));
        smsg[k].msg_hdr.msg_name = (void *)&dests[k];
        smsg[k].msg_hdr.msg_namelen = sizeof(dests[k]);
        smsg[k].msg_hdr.msg_iov = &siov[k];
        smsg[k].msg_hdr.msg_iovlen = 1;
    }
    for (;;) {
        int got = recvmmsg(fd, rmsg, BATCH, MSG_WAITFORONE, NULL);
        if (got <= 0)
            continue;
        for (int i = 0; i < got; i++) {
            for (int k = 0; k < ndests; k++) {
                siov[k].iov_base = bufs[i];
                siov[k].iov_len = rmsg[i].msg_len;
            }
            int sent = 0;
            while (sent < ndests) {
                int n = sendmmsg(fd, &smsg[sent], (unsigned)(ndests - sent), 0);
                if (n <= 0)
                    break;
                sent += n;
            }
        }
    }
    return 0;
}
