/* A resolver client nobody here wrote the resolver of: libc's getaddrinfo(3), built with musl-gcc -static.
 *
 * usage: resolve NAME [FAMILY]   FAMILY: 4 (AF_INET), 6 (AF_INET6) or any (AF_UNSPEC, the default)
 * Prints each distinct address on its own line, in the order getaddrinfo gave them, and exits 0;
 * on failure prints "error: <gai_strerror>" and exits 2. musl 1.2.3 (Debian 12) asks every nameserver
 * of resolv.conf at once, keeps the first reply, and never retries a truncated reply over TCP.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: resolve NAME [4|6|any]\n");
        return 64;
    }
    struct addrinfo hints, *result, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    if (argc > 2 && strcmp(argv[2], "4") == 0) hints.ai_family = AF_INET;
    if (argc > 2 && strcmp(argv[2], "6") == 0) hints.ai_family = AF_INET6;
    hints.ai_socktype = SOCK_STREAM;
    int status = getaddrinfo(argv[1], NULL, &hints, &result);
    if (status != 0) {
        printf("error: %s\n", gai_strerror(status));
        return 2;
    }
    for (ai = result; ai != NULL; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *address = ai->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                                       : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        inet_ntop(ai->ai_family, address, text, sizeof text);
        printf("%s\n", text);
    }
    freeaddrinfo(result);
    return 0;
}
