/* Load generator for benchmarks/connection_rate.py: short TCP connections, as fast as
 * possible, from CONCURRENCY threads.
 *
 *     connect_load HOST PORT CONNECTIONS CONCURRENCY PAYLOAD_BYTES MODE
 *
 * Each connection: socket(), a blocking connect(), send PAYLOAD_BYTES, then
 *   MODE "close": close() at once, and on to the next connection (open loop: the
 *     clients do not wait for the server, whose listen queue may fill up);
 *   MODE "wait": shutdown(SHUT_WR), read until the server closes, close() (closed
 *     loop: at most CONCURRENCY connections in flight).
 * The threads share the CONNECTIONS between them. Printed on stdout, one "key=value" per
 * line: the wall time, the connections made and failed, the connect() latencies and
 * the whole connections' (p50, p99, max, in ms), how many connect() calls took more
 * than 0.9 s (a SYN dropped by a full listen queue is retried after 1 s), and this
 * process's CPU time.
 * Written in C so that the client is not what limits the rate (a Python client makes
 * about as many connections per second as the servers under test accept).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct worker {
    pthread_t thread;
    long connections;
    long made;
    long failed;
    int first_errno;
    double *connects; /* seconds in connect(), one per connection attempted */
    double *wholes;   /* seconds from socket() to close() */
};

static struct sockaddr_in target;
static char payload[65536];
static size_t payload_size;
static int wait_for_close;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t sent = send(fd, data, size, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

static void *run(void *arg) {
    struct worker *w = arg;
    for (long i = 0; i < w->connections; i++) {
        double started = now();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&target, sizeof target) == 0;
        w->connects[i] = now() - started;
        if (ok)
            ok = send_all(fd, payload, payload_size) == 0;
        if (ok && wait_for_close) {
            char sink[4096];
            ssize_t got;
            shutdown(fd, SHUT_WR);
            while ((got = recv(fd, sink, sizeof sink, 0)) > 0 || (got < 0 && errno == EINTR))
                ;
            ok = got == 0;
        }
        if (fd >= 0)
            close(fd);
        w->wholes[i] = now() - started;
        if (ok) {
            w->made++;
        } else {
            if (w->failed++ == 0)
                w->first_errno = errno;
        }
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_latencies(const char *name, double *values, long count) {
    qsort(values, (size_t)count, sizeof *values, by_value);
    printf("%s_p50_ms=%.3f\n", name, 1e3 * values[count / 2]);
    printf("%s_p99_ms=%.3f\n", name, 1e3 * values[(count * 99) / 100]);
    printf("%s_max_ms=%.3f\n", name, 1e3 * values[count - 1]);
}

int main(int argc, char **argv) {
    if (argc != 7 || (strcmp(argv[6], "close") != 0 && strcmp(argv[6], "wait") != 0)) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS CONCURRENCY PAYLOAD_BYTES close|wait\n", argv[0]);
        return 2;
    }
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1) {
        fprintf(stderr, "%s: not an IPv4 address\n", argv[1]);
        return 2;
    }
    long connections = atol(argv[3]);
    int concurrency = atoi(argv[4]);
    payload_size = (size_t)atol(argv[5]);
    wait_for_close = strcmp(argv[6], "wait") == 0;
    if (connections < 1 || concurrency < 1 || payload_size > sizeof payload) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    memset(payload, 'x', payload_size);

    double *connects = calloc((size_t)connections, sizeof *connects);
    double *wholes = calloc((size_t)connections, sizeof *wholes);
    struct worker *workers = calloc((size_t)concurrency, sizeof *workers);
    if (connects == NULL || wholes == NULL || workers == NULL)
        return 1;
    long offset = 0;
    double started = now();
    for (int t = 0; t < concurrency; t++) {
        struct worker *w = &workers[t];
        w->connections = connections / concurrency + (t < connections % concurrency);
        w->connects = connects + offset;
        w->wholes = wholes + offset;
        offset += w->connections;
        if (pthread_create(&w->thread, NULL, run, w) != 0)
            return 1;
    }
    long made = 0, failed = 0;
    int first_errno = 0;
    for (int t = 0; t < concurrency; t++) {
        pthread_join(workers[t].thread, NULL);
        made += workers[t].made;
        failed += workers[t].failed;
        if (first_errno == 0)
            first_errno = workers[t].first_errno;
    }
    double elapsed = now() - started;

    long slow = 0;
    for (long i = 0; i < connections; i++)
        slow += connects[i] > 0.9;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("seconds=%.6f\n", elapsed);
    printf("made=%ld\nfailed=%ld\nfirst_error=%s\n", made, failed, failed ? strerror(first_errno) : "-");
    print_latencies("connect", connects, connections);
    print_latencies("connection", wholes, connections);
    printf("connect_over_900ms=%ld\n", slow);
    printf("cpu_seconds=%.3f\n", (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                                     (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
    free(connects);
    free(wholes);
    free(workers);
    return 0;
}
