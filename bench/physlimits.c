/* physlimits.c -- the two physical floors under a replicated write on this machine.
 *
 *   physlimits DIR [N_SYNC] [N_RTT]
 *
 * 1. fdatasync: appends 4 KiB to DIR/physlimits.tmp and fdatasync()s it, N_SYNC times
 *    (default 200), like a WAL that group-commits one batch per sync. A single-node
 *    write can never be acknowledged faster than one of these.
 * 2. loopback round trip: a forked child echoes 1 byte over a TCP socket on 127.0.0.1
 *    (TCP_NODELAY on both ends), N_RTT times (default 2000). A follower-forwarded or
 *    replicated write costs at least one of these on top.
 *
 * Prints one JSON object: {"fdatasync_us":{"median":..,"p99":..,"n":..},
 * "loopback_rtt_us":{...}}. Exits 1 with a message on any failure. The temp file is
 * removed. Built by `make bench` into $(B)/bench/physlimits; bench/kv_bench.py runs it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PHYS_N_MAX 100000 /* bounds both loops and the sample arrays */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_stats(const char *name, double *v, int n, const char *sep)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    int p99 = (int)((double)n * 0.99);
    if (p99 >= n)
        p99 = n - 1;
    printf("\"%s\":{\"median\":%.1f,\"p99\":%.1f,\"n\":%d}%s", name, v[n / 2], v[p99], n, sep);
}

static int bench_fdatasync(const char *dir, int n, double *out)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/physlimits.tmp", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "physlimits: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char block[4096];
    memset(block, 'w', sizeof(block));
    int rv = 0;
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block) || fdatasync(fd) != 0) {
            fprintf(stderr, "physlimits: write/fdatasync: %s\n", strerror(errno));
            rv = -1;
            break;
        }
        out[i] = now_us() - t0;
    }
    close(fd);
    unlink(path);
    return rv;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int bench_rtt(int n, double *out)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "physlimits: listen: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "physlimits: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) { /* echo child: n bytes back, then exit */
        int c = accept(ls, NULL, NULL);
        if (c < 0)
            _exit(1);
        set_nodelay(c);
        char b;
        for (int i = 0; i < n; i++)
            if (read(c, &b, 1) != 1 || write(c, &b, 1) != 1)
                _exit(1);
        _exit(0);
    }
    close(ls);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int rv = 0;
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        fprintf(stderr, "physlimits: connect: %s\n", strerror(errno));
        rv = -1;
    } else {
        set_nodelay(s);
        char b = 'p';
        for (int i = 0; i < n; i++) {
            double t0 = now_us();
            if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) {
                fprintf(stderr, "physlimits: ping-pong: %s\n", strerror(errno));
                rv = -1;
                break;
            }
            out[i] = now_us() - t0;
        }
    }
    if (s >= 0)
        close(s);
    if (rv != 0)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    return rv;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: physlimits DIR [N_SYNC] [N_RTT]\n");
        return 2;
    }
    int n_sync = argc > 2 ? atoi(argv[2]) : 200;
    int n_rtt = argc > 3 ? atoi(argv[3]) : 2000;
    if (n_sync < 1 || n_sync > PHYS_N_MAX || n_rtt < 1 || n_rtt > PHYS_N_MAX) {
        fprintf(stderr, "physlimits: counts must be in [1, %d]\n", PHYS_N_MAX);
        return 2;
    }
    double *sync_us = calloc((size_t)n_sync, sizeof(double));
    double *rtt_us = calloc((size_t)n_rtt, sizeof(double));
    if (!sync_us || !rtt_us || bench_fdatasync(argv[1], n_sync, sync_us) != 0 ||
        bench_rtt(n_rtt, rtt_us) != 0)
        return 1;
    printf("{");
    print_stats("fdatasync_us", sync_us, n_sync, ",");
    print_stats("loopback_rtt_us", rtt_us, n_rtt, "");
    printf("}\n");
    free(sync_us);
    free(rtt_us);
    return 0;
}
