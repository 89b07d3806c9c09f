/* Closed-loop traffic generator for bench/dataplane (compiled by run.py with gcc at run time).
 *
 * Sends pre-built frames (a template file written by run.py) on one or more interfaces of the
 * transmit namespace through one AF_PACKET socket with sendmmsg (qdisc bypassed), and counts
 * what arrives by reading the receive interfaces' rx_packets counters with RTM_GETSTATS over a
 * netlink socket opened in the receive namespace. No sink process: the receiving kernel only
 * bumps the device counter and drops the frame (other-host MAC or no route), so the sink can
 * never be the bottleneck.
 *
 * Closed loop: at most --window packets are in flight (sent and not yet counted at the sink),
 * so the generator runs at exactly the rate of the slowest stage and leaves the CPU it does
 * not need to the system under test (this machine may have only two cores). If the sink stops
 * advancing for --stall-ms while the window is full, the in-flight packets are presumed lost
 * and the window reopens. --window 0 is open loop (send as fast as possible).
 *
 * Output: one JSON object on stdout. "sent" counts frames the transmit device accepted,
 * "tx_dropped" those it refused (its queue full), "delivered" what the sink counted.
 *
 *   gen --tx-ns PATH --rx-ns PATH --tx-ifs a,b --rx-ifs x,y --templates FILE
 *       [--warmup S] [--duration S] [--window N] [--batch N] [--stall-ms N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif
#ifndef IFLA_STATS_FILTER_BIT
#define IFLA_STATS_FILTER_BIT(ATTR) (1 << ((ATTR) - 1))
#endif

#define MAX_IFS 4096
#define MAX_BATCH 256
#define MAX_TEMPLATES 65536

static void die(const char *what) {
    fprintf(stderr, "gen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void enter_ns(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    if (setns(fd, CLONE_NEWNET) < 0) die("setns");
    close(fd);
}

static int split_ifs(char *list, int *out) {
    int n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (n >= MAX_IFS) { fprintf(stderr, "gen: too many interfaces\n"); exit(2); }
        unsigned idx = if_nametoindex(tok);
        if (!idx) { fprintf(stderr, "gen: no interface %s: %s\n", tok, strerror(errno)); exit(2); }
        out[n++] = (int)idx;
    }
    return n;
}

/* --- sink counters ------------------------------------------------------------------------ */

static int nl_fd = -1;
static int n_rx;
static int rx_idx[MAX_IFS];
static unsigned char *rx_wanted; /* by ifindex, for dumps */
static int rx_wanted_max;
static unsigned nl_seq;
static long polls;
static char nl_buf[1 << 16];

static unsigned long long read_rx(void) {
    struct {
        struct nlmsghdr nh;
        struct if_stats_msg ifsm;
    } req;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_len = sizeof req;
    req.nh.nlmsg_type = RTM_GETSTATS;
    req.nh.nlmsg_flags = NLM_F_REQUEST | (n_rx > 1 ? NLM_F_DUMP : 0);
    req.nh.nlmsg_seq = ++nl_seq;
    req.ifsm.family = AF_UNSPEC;
    req.ifsm.ifindex = n_rx > 1 ? 0 : (uint32_t)rx_idx[0];
    req.ifsm.filter_mask = IFLA_STATS_FILTER_BIT(IFLA_STATS_LINK_64);
    if (send(nl_fd, &req, sizeof req, 0) < 0) die("netlink send");
    polls++;
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = recv(nl_fd, nl_buf, sizeof nl_buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("netlink recv");
        }
        int done = 0;
        for (struct nlmsghdr *nh = (struct nlmsghdr *)nl_buf; NLMSG_OK(nh, (size_t)n);
             nh = NLMSG_NEXT(nh, n)) {
            if (nh->nlmsg_seq != nl_seq) continue;
            if (nh->nlmsg_type == NLMSG_DONE) { done = 1; break; }
            if (nh->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(nh);
                errno = -e->error;
                die("RTM_GETSTATS");
            }
            if (nh->nlmsg_type == RTM_NEWSTATS) {
                struct if_stats_msg *m = NLMSG_DATA(nh);
                int ok = n_rx == 1 ? (int)m->ifindex == rx_idx[0]
                         : ((int)m->ifindex <= rx_wanted_max && rx_wanted[m->ifindex]);
                if (ok) {
                    int len = nh->nlmsg_len - NLMSG_LENGTH(sizeof *m);
                    struct rtattr *rta = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof *m));
                    for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
                        if (rta->rta_type == IFLA_STATS_LINK_64) {
                            struct rtnl_link_stats64 s;
                            memcpy(&s, RTA_DATA(rta), sizeof s);
                            total += s.rx_packets;
                        }
                    }
                }
            }
            if (!(nh->nlmsg_flags & NLM_F_MULTI)) done = 1;
        }
        if (done) break;
    }
    return total;
}

/* --- templates ---------------------------------------------------------------------------- */

struct tmpl {
    int slot; /* index into the tx interface list */
    int len;
    unsigned char *data;
};

static struct tmpl *tmpls;
static int n_tmpl;

static void load_templates(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    tmpls = calloc(MAX_TEMPLATES, sizeof *tmpls);
    unsigned char hdr[4];
    while (fread(hdr, 1, 4, f) == 4) {
        if (n_tmpl >= MAX_TEMPLATES) { fprintf(stderr, "gen: too many templates\n"); exit(2); }
        struct tmpl *t = &tmpls[n_tmpl++];
        t->slot = hdr[0] << 8 | hdr[1];
        t->len = hdr[2] << 8 | hdr[3];
        t->data = malloc(t->len);
        if (fread(t->data, 1, t->len, f) != (size_t)t->len) { fprintf(stderr, "gen: short template\n"); exit(2); }
    }
    fclose(f);
    if (!n_tmpl) { fprintf(stderr, "gen: no templates\n"); exit(2); }
}

/* --- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *tx_ns = NULL, *rx_ns = NULL, *tpath = NULL;
    char *tx_list = NULL, *rx_list = NULL;
    double warmup = 0.5, duration = 2.0;
    long window = 400, batch = 64, stall_ms = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--tx-ns")) tx_ns = v;
        else if (!strcmp(k, "--rx-ns")) rx_ns = v;
        else if (!strcmp(k, "--tx-ifs")) tx_list = strdup(v);
        else if (!strcmp(k, "--rx-ifs")) rx_list = strdup(v);
        else if (!strcmp(k, "--templates")) tpath = v;
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--window")) window = atol(v);
        else if (!strcmp(k, "--batch")) batch = atol(v);
        else if (!strcmp(k, "--stall-ms")) stall_ms = atol(v);
        else { fprintf(stderr, "gen: unknown option %s\n", k); return 2; }
    }
    if (!tx_ns || !rx_ns || !tx_list || !rx_list || !tpath) {
        fprintf(stderr, "gen: --tx-ns --rx-ns --tx-ifs --rx-ifs --templates are required\n");
        return 2;
    }
    if (batch < 1) batch = 1;
    if (batch > MAX_BATCH) batch = MAX_BATCH;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    load_templates(tpath);

    /* The receive side first: the netlink socket stays bound to the namespace it was made in. */
    enter_ns(rx_ns);
    n_rx = split_ifs(rx_list, rx_idx);
    for (int i = 0; i < n_rx; i++)
        if (rx_idx[i] > rx_wanted_max) rx_wanted_max = rx_idx[i];
    rx_wanted = calloc(rx_wanted_max + 1, 1);
    for (int i = 0; i < n_rx; i++) rx_wanted[rx_idx[i]] = 1;
    nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl_fd < 0) die("netlink socket");
    int rcvbuf = 1 << 20;
    setsockopt(nl_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

    enter_ns(tx_ns);
    static int tx_idx[MAX_IFS];
    int n_tx = split_ifs(tx_list, tx_idx);
    for (int i = 0; i < n_tmpl; i++)
        if (tmpls[i].slot >= n_tx) { fprintf(stderr, "gen: template slot out of range\n"); return 2; }
    /* Protocol 0: this socket receives nothing, so it costs nothing on the receive path. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) die("packet socket");
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) die("qdisc bypass");
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

    /* One sockaddr per interface, one iovec/msghdr slot per batch entry. */
    struct sockaddr_ll *addrs = calloc(n_tx, sizeof *addrs);
    for (int i = 0; i < n_tx; i++) {
        addrs[i].sll_family = AF_PACKET;
        addrs[i].sll_ifindex = tx_idx[i];
        addrs[i].sll_protocol = htons(ETH_P_IP);
    }
    static struct mmsghdr msgs[MAX_BATCH];
    static struct iovec iovs[MAX_BATCH];

    /* What one poll costs: a dump of a namespace with hundreds of devices takes ~100 us. */
    double poll_cost = now();
    unsigned long long base = read_rx();
    for (int i = 0; i < 4; i++) read_rx();
    poll_cost = (now() - poll_cost) / 5;
    unsigned long long sent = 0, presumed_lost = 0, delivered = 0, last_rx = 0;
    unsigned long long rx0 = 0, rx1 = 0, sent0 = 0, sent1 = 0;
    long send_errors = 0, stalls = 0, sleeps = 0;
    unsigned long long tx_dropped = 0; /* refused by the transmit device (its queue was full) */
    int last_errno = 0;
    int cursor = 0;
    double start = now();
    double warm_end = start + warmup, meas_end = warm_end + duration;
    double t0 = 0, t1 = 0, last_poll = 0, last_progress = start;
    /* Polling the sink costs a netlink round trip (a few microseconds, ~100 us for a dump of
     * a namespace with hundreds of devices). Polled too often, the generator takes CPU the
     * system under test needs (on two cores it shares one with a daemon), so polls take at
     * most 5% of its time: at most every poll_every while sending, and when the window is
     * full it sleeps for about a quarter of the time the system takes to drain the window at
     * the measured rate (at least poll_every, at most 2 ms). */
    double poll_every = 20 * poll_cost;
    if (poll_every < 200e-6) poll_every = 200e-6;
    const double stall = stall_ms * 1e-3 > 10 * poll_every ? stall_ms * 1e-3 : 10 * poll_every;
    double rate = 0, rate_t = start;
    unsigned long long rate_rx = 0;
    int phase = 0;
    struct timespec nap = {0, 50000};

    for (;;) {
        double t = now();
        if (phase == 0 && t >= warm_end) {
            delivered = read_rx() - base;
            last_poll = t;
            rx0 = delivered;
            sent0 = sent;
            t0 = now();
            phase = 1;
        } else if (phase == 1 && t >= meas_end) {
            delivered = read_rx() - base;
            t1 = now();
            rx1 = delivered;
            sent1 = sent;
            break;
        }
        long long inflight = (long long)(sent - presumed_lost) - (long long)delivered;
        int full = window > 0 && inflight >= window;
        if (full || t - last_poll >= poll_every) {
            delivered = read_rx() - base;
            last_poll = t;
            if (delivered != last_rx) {
                last_rx = delivered;
                last_progress = t;
            }
            if (t - rate_t >= 0.01) {
                double inst = (delivered - rate_rx) / (t - rate_t);
                rate = rate > 0 ? 0.7 * rate + 0.3 * inst : inst;
                rate_rx = delivered;
                rate_t = t;
                double sleep_s = rate > 0 && window > 0 ? 0.25 * window / rate : 50e-6;
                if (sleep_s > 2e-3) sleep_s = 2e-3;
                if (sleep_s < poll_every / 4) sleep_s = poll_every / 4;
                if (sleep_s < 50e-6) sleep_s = 50e-6;
                nap.tv_nsec = (long)(sleep_s * 1e9);
            }
            inflight = (long long)(sent - presumed_lost) - (long long)delivered;
            full = window > 0 && inflight >= window;
        }
        if (full) {
            if (t - last_progress > stall) {
                presumed_lost = sent - delivered;
                stalls++;
                last_progress = t;
            } else {
                nanosleep(&nap, NULL);
                sleeps++;
            }
            continue;
        }
        long n = batch;
        if (window > 0 && window - inflight < n) n = window - inflight;
        for (long i = 0; i < n; i++) {
            struct tmpl *tp = &tmpls[cursor];
            if (++cursor == n_tmpl) cursor = 0;
            iovs[i].iov_base = tp->data;
            iovs[i].iov_len = tp->len;
            msgs[i].msg_hdr.msg_name = &addrs[tp->slot];
            msgs[i].msg_hdr.msg_namelen = sizeof addrs[0];
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, msgs, n, 0);
        /* A device that drops a frame (a TAP/TUN whose reader is behind: ENOBUFS) fails the
         * send of that one frame: it is offered load the system under test lost, so it counts
         * as loss. sendmmsg stops at the first failure: -1 if it was the first frame, else the
         * number sent before it. The cursor already moved past the whole batch; the frames
         * after the failed one are simply skipped. */
        if (r < 0) {
            last_errno = errno;
            if (errno == ENOBUFS) tx_dropped++;
            else send_errors++;
            continue;
        }
        sent += r;
        if (r < n) tx_dropped++;
    }

    /* Drain: wait until the sink stops moving (or everything arrived), then count the losses. */
    nap.tv_nsec = 50000;
    double drain_start = now(), stable_since = drain_start;
    unsigned long long last = delivered;
    while (now() - drain_start < 1.0) {
        delivered = read_rx() - base;
        if (delivered >= sent) break;
        if (delivered != last) {
            last = delivered;
            stable_since = now();
        } else if (now() - stable_since > 0.1) {
            break;
        }
        nanosleep(&nap, NULL);
    }
    double el = t1 - t0;
    printf("{\"sent\": %llu, \"delivered\": %llu, \"meas_delivered\": %llu, \"meas_sent\": %llu, "
           "\"meas_seconds\": %.6f, \"pps\": %.1f, \"offered_pps\": %.1f, \"send_errors\": %ld, "
           "\"tx_dropped\": %llu, \"last_errno\": %d, \"stalls\": %ld, \"polls\": %ld, \"sleeps\": %ld, "
           "\"poll_us\": %.1f, \"window\": %ld, \"batch\": %ld, \"templates\": %d, \"tx_ifs\": %d, \"rx_ifs\": %d}\n",
           sent, delivered, rx1 - rx0, sent1 - sent0, el, el > 0 ? (rx1 - rx0) / el : 0.0,
           el > 0 ? (sent1 - sent0) / el : 0.0, send_errors, tx_dropped, last_errno, stalls, polls, sleeps,
           poll_cost * 1e6, window, batch, n_tmpl, n_tx, n_rx);
    return 0;
}
