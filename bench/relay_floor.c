/* relay_floor.c: the least a web server of inetsrv's shape can do per
 * request, as a yardstick for bench/isapi.sh. A front process (the
 * listener's role) accepts TCP connections on one epoll loop, finds the end
 * of each request head and forwards the head over a Unix socket; a back
 * process (the worker's role) reads the heads and answers each with the same
 * bytes. Both directions are batched: one write per loop turn, whatever the
 * number of requests in it. No parsing beyond the blank line, no logging,
 * no bodies: whatever inetsrv spends beyond this rate is its own code, not
 * the cost of crossing a process boundary.
 *
 * Usage: relay_floor PORT BODY   (answers "BODY\n" as text/plain)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 4096
#define HEAD_MAX 4096
#define BATCH (1 << 20)

/* One message on the Unix socket: the client's descriptor, which of the
 * connections that descriptor has carried (an answer for one that closed
 * must not reach the next), and a length. */
struct frame {
    uint32_t conn;
    uint32_t generation;
    uint32_t len;
};

static char response[1024];
static size_t response_len;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write");
        data += n;
        len -= (size_t)n;
    }
}

/* The worker's role: a response frame for every request frame. */
static void back(int sock)
{
    static char in[BATCH], out[BATCH];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(sock, in + have, sizeof in - have);
        if (n <= 0)
            exit(0);
        have += (size_t)n;
        size_t used = 0, queued = 0;
        struct frame f;
        while (have - used >= sizeof f) {
            memcpy(&f, in + used, sizeof f);
            if (have - used < sizeof f + f.len)
                break;
            used += sizeof f + f.len;
            if (queued + sizeof f + response_len > sizeof out) {
                write_all(sock, out, queued);
                queued = 0;
            }
            struct frame answer = {f.conn, f.generation, (uint32_t)response_len};
            memcpy(out + queued, &answer, sizeof answer);
            memcpy(out + queued + sizeof answer, response, response_len);
            queued += sizeof answer + response_len;
        }
        memmove(in, in + used, have - used);
        have -= used;
        if (queued)
            write_all(sock, out, queued);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: relay_floor PORT BODY\n");
        return 2;
    }
    int body_len = (int)strlen(argv[2]) + 1;
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\n\r\n%s\n",
                     body_len, argv[2]);
    if (n <= 0 || (size_t)n >= sizeof response) {
        fprintf(stderr, "relay_floor: the body is too long\n");
        return 2;
    }
    response_len = (size_t)n;

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
        die("socketpair");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(pair[0]);
        back(pair[1]);
    }
    close(pair[1]);
    /* Blocking for writes (a full socket waits), read without waiting. */
    int worker = pair[0];

    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024))
        die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    ev.data.fd = worker;
    epoll_ctl(ep, EPOLL_CTL_ADD, worker, &ev);

    static char heads[MAX_FD][HEAD_MAX];
    static size_t head_len[MAX_FD];
    static uint32_t generation[MAX_FD];
    static char from_worker[BATCH], to_worker[BATCH];
    size_t from_have = 0;
    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(ep, events, 256, -1);
        size_t queued = 0;
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int c;
                while ((c = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    head_len[c] = 0;
                    generation[c]++;
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                }
            } else if (fd == worker) {
                ssize_t got;
                while ((got = recv(worker, from_worker + from_have,
                                   sizeof from_worker - from_have, MSG_DONTWAIT)) > 0)
                    from_have += (size_t)got;
                size_t used = 0;
                struct frame f;
                while (from_have - used >= sizeof f) {
                    memcpy(&f, from_worker + used, sizeof f);
                    if (from_have - used < sizeof f + f.len)
                        break;
                    /* A client that went away loses its answer (the write
                     * fails, and that is all); a short write to a full
                     * socket is not expected of wrk's small requests. */
                    if (generation[f.conn] == f.generation) {
                        ssize_t sent = write((int)f.conn, from_worker + used + sizeof f, f.len);
                        (void)sent;
                    }
                    used += sizeof f + f.len;
                }
                memmove(from_worker, from_worker + used, from_have - used);
                from_have -= used;
            } else {
                ssize_t got = read(fd, heads[fd] + head_len[fd], HEAD_MAX - head_len[fd]);
                if (got <= 0) {
                    close(fd);
                    continue;
                }
                head_len[fd] += (size_t)got;
                char *end;
                while ((end = memmem(heads[fd], head_len[fd], "\r\n\r\n", 4)) != NULL) {
                    size_t len = (size_t)(end + 4 - heads[fd]);
                    if (queued + sizeof(struct frame) + len > sizeof to_worker) {
                        write_all(worker, to_worker, queued);
                        queued = 0;
                    }
                    struct frame f = {(uint32_t)fd, generation[fd], (uint32_t)len};
                    memcpy(to_worker + queued, &f, sizeof f);
                    memcpy(to_worker + queued + sizeof f, heads[fd], len);
                    queued += sizeof f + len;
                    memmove(heads[fd], heads[fd] + len, head_len[fd] - len);
                    head_len[fd] -= len;
                }
                if (head_len[fd] == HEAD_MAX) {
                    close(fd); /* a head too long for the yardstick */
                    head_len[fd] = 0;
                }
            }
        }
        if (queued)
            write_all(worker, to_worker, queued);
    }
}
