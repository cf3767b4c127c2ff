/* The lab's delay line in C: the same model as tests/wan/delayline.py, at a fraction of its
 * CPU (the lab compiles it at start with gcc; tests/wan/lab.py falls back to the Python one,
 * with a logged reason, where it cannot).
 *
 * Usage (as root, inside the namespace that holds both interfaces):
 *
 *     delayline IFACE_A IFACE_B DELAY_SECONDS [COUNTS_FILE]
 *
 * Every frame that arrives on one interface is sent out of the other DELAY_SECONDS after it
 * arrived, in both directions, in arrival order (a constant delay keeps FIFO order: one queue
 * per direction is the whole timer). What it models is delayline.py's: PACKET_VNET_HDR and
 * PACKET_IGNORE_OUTGOING on both sockets; a frame dropped (counted) when its direction
 * already holds MAX_QUEUED_BYTES or when the outgoing interface refuses it.
 *
 * Why it is cheaper than the Python one (same frames, fewer instructions and syscalls):
 * - Arrival times are the kernel's (SO_TIMESTAMPNS), so while anything is queued the relay
 *   sleeps until the head is due and reads what arrived meanwhile then, instead of waking for
 *   every arrival; it waits on the sockets only when both queues are empty.
 * - Timer wake-ups are coalesced: it wakes when the head is due but never sooner than
 *   SLACK_NS after its last wake-up, and sends every frame due by then. A lone frame (a
 *   ping) is held DELAY_SECONDS (plus scheduling latency); in a busy stream a frame waits
 *   0..SLACK_NS more, so as to leave with the others due within that slack; never less.
 * - recvmmsg / sendmmsg: up to BATCH frames per syscall.
 *
 * COUNTS_FILE (optional): the relay makes it 256 little-endian uint64 counters, mapped shared,
 * and adds to counter k the bytes of every IPv4 frame it sends from IFACE_A to IFACE_B whose
 * destination address ends in byte k (frame bytes as relayed, virtio-net header left out):
 * who a host sends to, readable by anyone at any moment (the lab's per-pair timeline).
 *
 * Stats: on SIGTERM or SIGINT it prints one JSON line to stdout ({"frames": N, "bytes": N,
 * "dropped": N, "wakeups": N, "user_s": S, "sys_s": S, "unstamped": N}: frames and bytes
 * sent, frames dropped, wake-ups, its own CPU seconds, frames whose kernel arrival time was
 * missing or implausible and got the time they were read instead) and exits 0. Exit 2 on bad
 * arguments, 1 when an interface or COUNTS_FILE cannot be opened.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_VNET_HDR
#define PACKET_VNET_HDR 15
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define SOCKET_BUFFER (8 * 1024 * 1024) /* bytes, each way: as delayline.py */
#define MAX_FRAME 70000                 /* virtio-net header + a 64 KiB GSO frame */
#define MAX_QUEUED_BYTES (32L * 1024 * 1024) /* per direction, as delayline.py */
#define BATCH 64                        /* frames per recvmmsg / sendmmsg */
#define DRAIN_LIMIT 8192                /* frames read per wake-up and socket, at most */
#define SLACK_NS 500000LL               /* 0.5 ms: timer wake-ups at least this far apart */
#define IDLE_WAIT_MS 1000               /* epoll timeout with nothing queued */
#define STAMP_WINDOW_NS 1000000000LL    /* an arrival time older than 1 s is implausible */
#define VNET_HDR 10                     /* struct virtio_net_hdr before the Ethernet header */
#define COUNTERS 256                    /* per last byte of an IPv4 destination */

typedef struct {
    int64_t due; /* ns, CLOCK_REALTIME (the clock of SO_TIMESTAMPNS) */
    uint32_t len;
    unsigned char *data;
} frame_t;

typedef struct {
    frame_t *ring;
    size_t cap, head, n; /* cap: a power of two */
    long bytes;
} queue_t;

typedef struct {
    unsigned long long frames, bytes, dropped, wakeups, unstamped;
} stats_t;

static volatile sig_atomic_t stopping;
static unsigned char rxbuf[BATCH][MAX_FRAME];
static char rxctl[BATCH][CMSG_SPACE(sizeof(struct timespec))];

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int open_socket(const char *iface) {
    int one = 1, size = SOCKET_BUFFER;
    unsigned int index = if_nametoindex(iface);
    if (index == 0) {
        fprintf(stderr, "delayline: no interface %s\n", iface);
        return -1;
    }
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, 0); /* 0: nothing until bound */
    if (fd < 0 || setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0
        || setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0
        || setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0
        || setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0
        || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0) {
        perror("delayline: socket");
        return -1;
    }
    struct sockaddr_ll addr = {0};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = (int)index;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("delayline: bind");
        return -1;
    }
    return fd;
}

static int push(queue_t *q, int64_t due, const unsigned char *data, uint32_t len) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 1024;
        frame_t *ring = malloc(cap * sizeof *ring);
        if (ring == NULL)
            return -1;
        for (size_t i = 0; i < q->n; i++)
            ring[i] = q->ring[(q->head + i) & (q->cap - 1)];
        free(q->ring);
        q->ring = ring;
        q->cap = cap;
        q->head = 0;
    }
    unsigned char *copy = malloc(len);
    if (copy == NULL)
        return -1;
    memcpy(copy, data, len);
    q->ring[(q->head + q->n) & (q->cap - 1)] = (frame_t){due, len, copy};
    q->n++;
    q->bytes += len;
    return 0;
}

static void pop(queue_t *q) {
    frame_t *f = &q->ring[q->head];
    q->bytes -= f->len;
    free(f->data);
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
}

static int64_t arrival(struct msghdr *msg, int64_t now, stats_t *st) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec t;
            memcpy(&t, CMSG_DATA(c), sizeof t);
            int64_t at = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
            if (at <= now && now - at < STAMP_WINDOW_NS)
                return at;
        }
    }
    st->unstamped++;
    return now;
}

/* Read every frame waiting on fd (DRAIN_LIMIT at most) into q, each due its arrival + delay. */
static void drain(int fd, queue_t *q, int64_t delay, stats_t *st) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int got = 0; got < DRAIN_LIMIT;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){rxbuf[i], MAX_FRAME};
            msgs[i].msg_hdr = (struct msghdr){
                .msg_iov = &iov[i], .msg_iovlen = 1,
                .msg_control = rxctl[i], .msg_controllen = sizeof rxctl[i]};
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN: drained (EINTR: the loop looks at `stopping`) */
        int64_t now = now_ns();
        for (int i = 0; i < n; i++) {
            uint32_t len = msgs[i].msg_len;
            if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || q->bytes + len > MAX_QUEUED_BYTES
                || push(q, arrival(&msgs[i].msg_hdr, now, st) + delay, rxbuf[i], len) != 0) {
                st->dropped++;
            }
        }
        got += n;
        if (n < BATCH)
            return;
    }
}

/* COUNTS_FILE's counters, mapped (see the header comment); NULL: not counted. */
static int open_counts(const char *path, volatile uint64_t **counts) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, COUNTERS * sizeof(uint64_t)) != 0) {
        perror("delayline: counts file");
        return -1;
    }
    void *map = mmap(NULL, COUNTERS * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        perror("delayline: mmap counts");
        return -1;
    }
    *counts = map;
    return 0;
}

/* Add an IPv4 frame's bytes to its destination's counter (anything else: not counted). */
static void count(volatile uint64_t *counts, const unsigned char *data, uint32_t len) {
    const unsigned char *eth = data + VNET_HDR;
    if (counts == NULL || len < VNET_HDR + 14 + 20 || eth[12] != 0x08 || eth[13] != 0x00)
        return;
    counts[eth[14 + 19]] += len - VNET_HDR; /* IPv4 destination: header bytes 16..19 */
}

/* Send every frame of q due by now out of fd, in order; one the interface refuses is dropped.
 * ``counts``: each frame sent is added to it (see `count`); NULL: not counted. */
static void flush(int fd, queue_t *q, int64_t now, stats_t *st, volatile uint64_t *counts) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    while (q->n > 0 && q->ring[q->head].due <= now) {
        int k = 0;
        for (; k < BATCH && (size_t)k < q->n; k++) {
            frame_t *f = &q->ring[(q->head + (size_t)k) & (q->cap - 1)];
            if (f->due > now)
                break;
            iov[k] = (struct iovec){f->data, f->len};
            msgs[k].msg_hdr = (struct msghdr){.msg_iov = &iov[k], .msg_iovlen = 1};
        }
        int sent = sendmmsg(fd, msgs, (unsigned int)k, MSG_DONTWAIT);
        if (sent < 0) { /* the first frame refused: ENOBUFS (qdisc full), EAGAIN, ... */
            st->dropped++;
            pop(q);
            continue;
        }
        for (int i = 0; i < sent; i++) {
            st->frames++;
            st->bytes += q->ring[q->head].len;
            count(counts, q->ring[q->head].data, q->ring[q->head].len);
            pop(q);
        }
    }
}

static int parse_delay(const char *text, int64_t *ns) {
    char *end;
    errno = 0;
    double s = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(s >= 0.0 && s <= 10.0))
        return -1;
    *ns = (int64_t)(s * 1e9 + 0.5);
    return 0;
}

int main(int argc, char **argv) {
    int64_t delay;
    volatile uint64_t *counts = NULL;
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: delayline IFACE_A IFACE_B DELAY_SECONDS [COUNTS_FILE]\n");
        return 2;
    }
    if (parse_delay(argv[3], &delay) != 0) {
        fprintf(stderr, "delayline: bad delay '%s' (seconds, 0..10)\n", argv[3]);
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: a sleep or wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (argc == 5 && open_counts(argv[4], &counts) != 0)
        return 1;
    int fd[2] = {open_socket(argv[1]), open_socket(argv[2])};
    if (fd[0] < 0 || fd[1] < 0)
        return 1;
    int ep = epoll_create1(0);
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
    }
    queue_t q[2] = {{0}, {0}}; /* q[i]: frames read on fd[i], to leave by fd[1 - i] */
    stats_t st = {0};
    while (!stopping) {
        drain(fd[0], &q[0], delay, &st);
        drain(fd[1], &q[1], delay, &st);
        int64_t now = now_ns();
        flush(fd[1], &q[0], now, &st, counts);
        flush(fd[0], &q[1], now, &st, NULL);
        if (q[0].n == 0 && q[1].n == 0) {
            struct epoll_event evs[2];
            epoll_wait(ep, evs, 2, IDLE_WAIT_MS);
        } else {
            int64_t next = INT64_MAX;
            for (int i = 0; i < 2; i++)
                if (q[i].n > 0 && q[i].ring[q[i].head].due < next)
                    next = q[i].ring[q[i].head].due;
            if (next < now + SLACK_NS) /* at most one timer wake-up per SLACK_NS */
                next = now + SLACK_NS;
            struct timespec t = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL};
            clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, NULL);
        }
        st.wakeups++;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"frames\": %llu, \"bytes\": %llu, \"dropped\": %llu, \"wakeups\": %llu, "
           "\"user_s\": %.2f, \"sys_s\": %.2f, \"unstamped\": %llu}\n",
           st.frames, st.bytes, st.dropped, st.wakeups,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, st.unstamped);
    return 0;
}
