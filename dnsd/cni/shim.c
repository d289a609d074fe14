/* netcore-dns: the CNI plugin's executable (issue 29). `dnsd cni-install` compiles it with the definitions
 * below and writes it into the CNI plugin directory.
 *
 * A CNI runtime runs a plugin once per call. This program hands the call to the dnsd serving its state dir
 * (STATE_DIR/cni.sock, dnsd/cni/service.py has the protocol): the CNI_* environment, then stdin; dnsd runs
 * the plugin's Python code (dnsd.cni.plugin) and answers the exit status and stdout. When no dnsd takes the
 * call (the first ADD, which starts dnsd; dnsd down or stopping), it runs the plugin in Python itself:
 * PYTHON -I -S -c FALLBACK, with stdin as it came. No exit status or output of its own: the plugin's.
 * A dnsd that goes away while the call is written (it stops after the last DEL) is one that declined it: the
 * write fails with EPIPE (SIGPIPE is ignored here; it killed the plugin, status -13, before) and the call is
 * run here.
 *
 * Defined by the build (dnsd/cni/install.py writes them into a header):
 *   NETCORE_CNI_STATE_DIR_DEFAULT  the state dir when $NETCORE_CNI_STATE_DIR is not set
 *   NETCORE_CNI_PYTHON             the interpreter of the Python plugin
 *   NETCORE_CNI_FALLBACK           the code it runs: dnsd.cni.plugin.main(STATE_DIR_DEFAULT)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define ANSWER_TIMEOUT 60 /* seconds; dnsd answers in milliseconds, waiting for a busy store at most 30 s */

static void run_python(void) {
    char *argv[] = {NETCORE_CNI_PYTHON, "-I", "-S", "-c", NETCORE_CNI_FALLBACK, NULL};
    signal(SIGPIPE, SIG_DFL); /* the plugin's process as the runtime started it */
    execv(NETCORE_CNI_PYTHON, argv);
    /* as the plugin would: the spec's error document, code 5 (I/O failure) */
    printf("{\"cniVersion\": \"1.1.0\", \"code\": 5, \"msg\": \"cannot run the plugin\", "
           "\"details\": \"%s: %s\"}", NETCORE_CNI_PYTHON, strerror(errno));
    exit(1);
}

/* stdin is already read: give it to the Python plugin through a pipe, and exit with its status */
static int run_python_with(const char *input, size_t length) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return 1;
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
        dup2(pipe_fds[0], 0);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        run_python();
    }
    close(pipe_fds[0]);
    for (size_t done = 0; done < length;) {
        ssize_t written = write(pipe_fds[1], input + done, length - done);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) break;
        done += (size_t)written;
    }
    close(pipe_fds[1]);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int write_all(int fd, const char *data, size_t length) {
    for (size_t done = 0; done < length;) {
        ssize_t written = write(fd, data + done, length - done);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return -1;
        done += (size_t)written;
    }
    return 0;
}

/* read fd to its end into a growing buffer; -1 on error */
static ssize_t read_all(int fd, char **buffer, size_t *capacity, size_t length) {
    for (;;) {
        if (length == *capacity) {
            *capacity = *capacity ? *capacity * 2 : 65536;
            char *grown = realloc(*buffer, *capacity);
            if (!grown) return -1;
            *buffer = grown;
        }
        ssize_t got = read(fd, *buffer + length, *capacity - length);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) return (ssize_t)length;
        length += (size_t)got;
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* a reader gone (dnsd stopping, the Python plugin exited) is an error returned */
    const char *state_dir = getenv("NETCORE_CNI_STATE_DIR");
    if (!state_dir || !*state_dir) state_dir = NETCORE_CNI_STATE_DIR_DEFAULT;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(address.sun_path, sizeof address.sun_path, "%s/cni.sock", state_dir)
            >= sizeof address.sun_path)
        run_python();
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) != 0)
        run_python(); /* no dnsd: stdin untouched, the Python plugin reads it */
    /* a dnsd that takes the call but never answers: after ANSWER_TIMEOUT the call is run here */
    struct timeval timeout = {.tv_sec = ANSWER_TIMEOUT};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

    /* the environment entries dnsd takes, then stdin */
    size_t capacity = 65536, length = 0;
    char *call = malloc(capacity);
    if (!call) run_python();
    for (char **entry = environ; *entry; entry++) {
        if (strncmp(*entry, "CNI_", 4) != 0) continue;
        size_t size = strlen(*entry) + 1;
        while (length + size + 1 > capacity) {
            capacity = capacity ? capacity * 2 : 65536;
            char *grown = realloc(call, capacity);
            if (!grown) return run_python_with("", 0);
            call = grown;
        }
        memcpy(call + length, *entry, size);
        length += size;
    }
    call[length++] = '\0';
    size_t environment_length = length;
    ssize_t total = read_all(0, &call, &capacity, length);
    if (total < 0) return run_python_with("", 0);
    length = (size_t)total;
    if (write_all(sock, call, length) != 0 || shutdown(sock, SHUT_WR) != 0)
        return run_python_with(call + environment_length, length - environment_length);

    char *answer = NULL;
    size_t answer_capacity = 0;
    ssize_t answer_length = read_all(sock, &answer, &answer_capacity, 0);
    close(sock);
    if (answer_length < 1 || answer[0] < '0' || answer[0] > '9')  /* dnsd declined, or went: run it here */
        return run_python_with(call + environment_length, length - environment_length);
    if (write_all(1, answer + 1, (size_t)answer_length - 1) != 0) return 1;
    return answer[0] - '0';
}
