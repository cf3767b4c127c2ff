/* A BEP 15 load generator for benchmarks/bench_udp.py and bench_cluster.py: cheap enough
 * (a few us of CPU per transaction) that a Python tracker on the other core is the
 * bottleneck, which the Python generator in bench_tracker.py is not.
 *
 *   udp_load HOST PORT MODE SECONDS WINDOW PEERS TORRENTS [HASHES [SOCKETS]]
 *
 * MODE: started  every peer 0..PEERS-1 announces once (event started); SECONDS bounds it
 *       connect  each transaction is a connect, then an announce of a random peer
 *       cached   announces of random peers on one connection id per socket
 *       scrape   scrapes of HASHES random info-hashes on one connection id per socket
 * WINDOW transactions stay in flight, spread over SOCKETS sockets (default 4). Peer p is
 * torrent p % TORRENTS, port 10000 + p / TORRENTS, a seeder when (p / TORRENTS) % 5 == 0,
 * as in bench_tracker.py. Prints "UDPRESULT done errors p50_us p99_us seconds".
 * Built at run time by the benchmark (gcc -O2); not part of the package.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WINDOW 4096
#define MAX_SOCKETS 64
#define MAX_SAMPLES 20000000

enum { M_STARTED, M_CONNECT, M_CACHED, M_SCRAPE };

struct slot {
    uint32_t tid;
    int action; /* the reply expected: 0 connect, 1 announce, 2 scrape */
    double sent, began;
    long peer; /* M_STARTED: the peer announced (resent on loss) */
};

static int mode, window, nsock = 4, hashes = 1;
static long peers, torrents, next_peer;
static int socks[MAX_SOCKETS];
static uint64_t cids[MAX_SOCKETS];
static struct slot slots[MAX_WINDOW];
static float *samples;
static long nsamples, done, errors;
static uint64_t rng = 88172645463325252ULL;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void put32(unsigned char *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }

static void info_hash(unsigned char *p, long t) {
    memset(p, 0xb7, 16);
    put32(p + 16, (uint32_t)t);
}

static void send_connect(int s, int i) {
    unsigned char b[16];
    put64(b, 0x41727101980ULL);
    put32(b + 8, 0);
    put32(b + 12, slots[i].tid);
    slots[i].action = 0;
    send(socks[s], b, 16, 0);
}

static void send_announce(int s, int i, long p, int event) {
    unsigned char b[98];
    put64(b, cids[s]);
    put32(b + 8, 1);
    put32(b + 12, slots[i].tid);
    info_hash(b + 16, p % torrents);
    snprintf((char *)b + 36, 21, "-BT0001-%012ld", p);
    long group = p / torrents;
    put64(b + 56, 0);                                  /* downloaded */
    put64(b + 64, group % 5 == 0 ? 0 : 1000000);       /* left */
    put64(b + 72, 0);                                  /* uploaded */
    put32(b + 80, event);
    put32(b + 84, 0);                                  /* ip */
    put32(b + 88, (uint32_t)p);                        /* key */
    put32(b + 92, 50);                                 /* num_want */
    b[96] = (uint8_t)((10000 + group) >> 8);
    b[97] = (uint8_t)(10000 + group);
    slots[i].action = 1;
    slots[i].peer = p;
    send(socks[s], b, 98, 0);
}

static void send_scrape(int s, int i) {
    unsigned char b[16 + 20 * 74];
    put64(b, cids[s]);
    put32(b + 8, 2);
    put32(b + 12, slots[i].tid);
    for (int h = 0; h < hashes; h++) info_hash(b + 16 + 20 * h, (long)(rnd() % torrents));
    slots[i].action = 2;
    send(socks[s], b, 16 + 20 * hashes, 0);
}

/* Start the next transaction in slot i (socket i % nsock). 0 when there is none left. */
static int start(int i, double t) {
    int s = i % nsock;
    slots[i].tid = (slots[i].tid & 0xffff0000u) + 0x10000u + (uint32_t)i;
    slots[i].began = slots[i].sent = t;
    switch (mode) {
    case M_STARTED:
        if (next_peer >= peers) { slots[i].action = -1; return 0; }
        send_announce(s, i, next_peer++, 2);
        return 1;
    case M_CONNECT: send_connect(s, i); return 1;
    case M_CACHED: send_announce(s, i, (long)(rnd() % peers), 0); return 1;
    default: send_scrape(s, i); return 1;
    }
}

static int cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s HOST PORT started|connect|cached|scrape SECONDS WINDOW "
                        "PEERS TORRENTS [HASHES [SOCKETS]]\n", argv[0]);
        return 2;
    }
    const char *m = argv[3];
    mode = !strcmp(m, "started") ? M_STARTED : !strcmp(m, "connect") ? M_CONNECT
         : !strcmp(m, "cached") ? M_CACHED : !strcmp(m, "scrape") ? M_SCRAPE : -1;
    double seconds = atof(argv[4]);
    window = atoi(argv[5]);
    peers = atol(argv[6]);
    torrents = atol(argv[7]);
    if (argc > 8) hashes = atoi(argv[8]);
    if (argc > 9) nsock = atoi(argv[9]);
    if (mode < 0 || window < 1 || window > MAX_WINDOW || peers < 1 || torrents < 1 ||
        hashes < 1 || hashes > 74 || nsock < 1 || nsock > MAX_SOCKETS || nsock > window) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    struct pollfd pfd[MAX_SOCKETS];
    for (int s = 0; s < nsock; s++) {
        socks[s] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int buf = 1 << 21;
        setsockopt(socks[s], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        if (connect(socks[s], (struct sockaddr *)&to, sizeof to)) { perror("connect"); return 1; }
        pfd[s].fd = socks[s];
        pfd[s].events = POLLIN;
    }
    samples = malloc(sizeof(float) * MAX_SAMPLES);
    double t0 = now(), deadline = t0 + seconds;
    /* One connection id per socket first (cached, scrape, started). */
    if (mode != M_CONNECT) {
        for (int s = 0; s < nsock; s++) {
            for (int tries = 0; !cids[s]; tries++) {
                if (tries > 50 || now() > deadline) { fprintf(stderr, "no connect reply\n"); return 1; }
                slots[s].tid = 0x7fff0000u + s;
                send_connect(s, s);
                struct pollfd one = {.fd = socks[s], .events = POLLIN};
                if (poll(&one, 1, 200) == 1) {
                    unsigned char r[64];
                    ssize_t n = recv(socks[s], r, sizeof r, 0);
                    if (n >= 16 && get32(r) == 0 && get32(r + 4) == slots[s].tid) cids[s] = get64(r + 8);
                }
            }
        }
    }
    t0 = now();
    int active = 0;
    for (int i = 0; i < window; i++) active += start(i, t0);
    double last_sweep = t0;
    unsigned char r[2048];
    while (active > 0) {
        double t = now();
        if (t >= deadline) break;
        if (t - last_sweep > 0.5) { /* lost datagrams: what waited over a second starts again */
            last_sweep = t;
            for (int i = 0; i < window; i++) {
                if (slots[i].action >= 0 && t - slots[i].sent > 1.0) {
                    errors++;
                    if (mode == M_STARTED) {
                        slots[i].sent = t;
                        send_announce(i % nsock, i, slots[i].peer, 2);
                    } else {
                        start(i, t);
                    }
                }
            }
        }
        if (poll(pfd, nsock, 200) <= 0) continue;
        for (int s = 0; s < nsock; s++) {
            if (!(pfd[s].revents & POLLIN)) continue;
            for (int k = 0; k < 64; k++) {
                ssize_t n = recv(socks[s], r, sizeof r, 0);
                if (n < 0) break;
                if (n < 8) continue;
                uint32_t action = get32(r), tid = get32(r + 4);
                int i = tid & 0xffff;
                if (i >= window || slots[i].tid != tid || slots[i].action < 0) continue;
                t = now();
                if (action == 0 && n >= 16 && slots[i].action == 0) {
                    cids[s] = get64(r + 8);
                    slots[i].sent = t;
                    send_announce(s, i, (long)(rnd() % peers), 0);
                    continue;
                }
                if (action != (uint32_t)slots[i].action) {
                    errors++;
                } else {
                    done++;
                    if (nsamples < MAX_SAMPLES) samples[nsamples++] = (float)((t - slots[i].began) * 1e6);
                }
                if (!start(i, t)) active--;
            }
        }
    }
    double elapsed = now() - t0;
    qsort(samples, nsamples, sizeof(float), cmp);
    double p50 = nsamples ? samples[nsamples / 2] : 0, p99 = nsamples ? samples[nsamples * 99 / 100] : 0;
    printf("UDPRESULT %ld %ld %.0f %.0f %.3f\n", done, errors, p50, p99, elapsed);
    return 0;
}
