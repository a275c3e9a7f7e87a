/*
 * echo_client.c - a minimal TCP client for the transparent-listener tests, built
 * statically (no libc.so, no LD_PRELOAD can reach it): the kind of program only a
 * kernel redirect can send through a proxy.
 *
 *     echo-client-static HOST PORT MESSAGE
 *
 * Connects to HOST:PORT (IPv4 or IPv6 literal), writes MESSAGE, half-closes, reads
 * until EOF and prints what came back on stdout. Exit status: 0 when it was MESSAGE,
 * 1 when something else came back, 2 on a usage error, 3 when the connect, a write
 * or a read failed (the error on stderr; ECONNRESET is what a refused tunnel gives).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT MESSAGE\n", argv[0]);
        return 2;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    unsigned port = (unsigned)atoi(argv[2]);
    if (inet_pton(AF_INET, argv[1], &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, argv[1], &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof(*a6);
    } else {
        fprintf(stderr, "%s: not an address\n", argv[1]);
        return 2;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *)&ss, len) == -1) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        return 3;
    }
    size_t n = strlen(argv[3]);
    if (write(fd, argv[3], n) != (ssize_t)n || shutdown(fd, SHUT_WR) == -1) {
        fprintf(stderr, "write: %s\n", strerror(errno));
        return 3;
    }
    char buf[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r == -1) {
            fprintf(stderr, "read: %s\n", strerror(errno));
            return 3;
        }
        if (r == 0 || got + (size_t)r >= sizeof(buf) - 1) {
            got += (size_t)r;
            break;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    fputs(buf, stdout);
    close(fd);
    return got == n && memcmp(buf, argv[3], n) == 0 ? 0 : 1;
}
