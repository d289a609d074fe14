/* netcore's command as a native program: the launcher pip installs as `netcore` when a C compiler is there
 * (setup.py builds it; issue 26). Without one, `netcore` is the Python script scripts/netcore, which behaves
 * the same.
 *
 * A command is a fresh process; a Python one costs about 20 ms before it says a word (the interpreter, its
 * site, the client's imports), more than netavark's whole teardown. This program takes the common case alone:
 * a command whose line the agent parses itself (netcore.agent.protocol: {"netcored": N, "argv": [...]}) and
 * whose reply is only printed. It sends the line to the state dir's running agent, writes each "out" text to
 * stdout and each "err" line to stderr (after "netcore: "), and exits with the "exit" status.
 *
 * A Compose command's line goes with this process's working directory and environment ("cwd", "environ"),
 * which Compose reads its files from and interpolates with.
 *
 * Everything else is the Python client's, which this program becomes (execv, the same arguments) before it
 * has sent anything: another command (exec and run -- CMD act in the user's terminal, agent prints its
 * reply, ...), help, an option the line may not carry, an argument, directory or environment variable that
 * is not UTF-8, no root, no agent answering (the Python client starts one), and a line the agent gives back
 * ("parse": a usage error, said in the parser's words; Compose's -f -, which reads standard input) or
 * refuses as of another protocol.
 * Once the agent has the request, the command is the agent's: a connection that ends before the exit line is
 * one line and status 1, never a second try; Ctrl-C is "netcore: interrupted" and status 130, as the Python
 * client says it (the agent finishes an action it began; `logs -f` stops following), except the first during
 * a reply the agent marked interruptible (an attached compose up): it asks for the command's graceful end and
 * reads on, as Docker Compose does (netcore.agent.protocol).
 *
 * Defined by the build (setup.py, from netcore.cli and netcore.agent; one home for each):
 *   NETCORE_PYTHON      the interpreter of the Python client (python -P -m netcore ARGS)
 *   NETCORE_PROTOCOL    netcored's protocol version (netcore.agent.protocol.PROTOCOL)
 *   NETCORE_INTERRUPT   the line asking for the graceful end of an interruptible reply (protocol.INTERRUPT)
 *   NETCORE_GRACEFUL    what Ctrl-C then says, as Docker Compose says it (protocol.GRACEFUL)
 *   NETCORE_COMMANDS    "|network|run|...|": the first words this program sends (netcore.cli.LAUNCHER_COMMANDS)
 *   NETCORE_NOT_SENT    "|network prune|...|": two-word commands among them it leaves to Python (NOT_AS_LINE)
 *   NETCORE_CONTEXT_COMMANDS  "|compose|up|down|": those sent with the directory and environment (CONTEXT_COMMANDS)
 *   NETCORE_STATE_DIR_DEFAULT  the state dir without $NETCORE_STATE_DIR or --state-dir (DEFAULT_STATE_DIR)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define USAGE_STATUS 2         /* netcored's status for a request it does not take */
#define CAP_NET_ADMIN_BIT 12   /* the capabilities netcore needs (netcore.system.privileges.CAPABILITIES) */
#define CAP_SYS_ADMIN_BIT 21

static char **original_argv;
static int agent = -1;                         /* the connection to the agent, once made */
static volatile sig_atomic_t interruptible;    /* the reply was marked interruptible (an attached compose up) */
static volatile sig_atomic_t interrupt_sent;   /* Ctrl-C asked for its graceful end already */

/* become the Python client, with the arguments as they came */
static void python_client(void) {
    int argc = 0;
    while (original_argv[argc]) argc++;
    char **argv = calloc((size_t)argc + 4, sizeof(char *));
    if (argv) {
        argv[0] = NETCORE_PYTHON;
        argv[1] = "-P"; /* nothing from the working directory: python -m would put it first on the path */
        argv[2] = "-m";
        argv[3] = "netcore";
        for (int i = 1; i < argc; i++) argv[i + 3] = original_argv[i];
        execv(NETCORE_PYTHON, argv);
    }
    fprintf(stderr, "netcore: cannot run %s: %s\n", NETCORE_PYTHON, strerror(errno));
    exit(1);
}

/* Ctrl-C once connected: during an interruptible reply, the first asks the agent for the command's graceful end
 * (the reply goes on to its exit line); otherwise the Python client's line and status (netcore.cli._guarded) */
static void interrupted(int signum) {
    (void)signum;
    if (interruptible && !interrupt_sent) {
        interrupt_sent = 1;
        ssize_t said = write(STDERR_FILENO, NETCORE_GRACEFUL, sizeof NETCORE_GRACEFUL - 1);
        ssize_t asked = send(agent, NETCORE_INTERRUPT, sizeof NETCORE_INTERRUPT - 1, MSG_NOSIGNAL);
        (void)said, (void)asked;
        return;
    }
    static const char line[] = "netcore: interrupted\n";
    ssize_t written = write(STDERR_FILENO, line, sizeof line - 1);
    (void)written;
    _exit(130);
}

/* -- what the Python client's command_line() decides, for the commands this program sends ---------------- */

static int listed(const char *list, const char *word) { /* word in "|a|b c|...|" */
    size_t length = strlen(word);
    if (!length || strchr(word, '|')) return 0;
    for (const char *at = strstr(list, word); at; at = strstr(at + 1, word))
        if (at[-1] == '|' && at[length] == '|') return 1;
    return 0;
}

static int valid_utf8(const unsigned char *s) {
    while (*s) {
        int extra = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2 : (*s & 0xF8) == 0xF0 ? 3 : -1;
        if (extra < 0 || (extra == 1 && *s < 0xC2)) return 0;
        s++;
        for (int i = 0; i < extra; i++, s++)
            if ((*s & 0xC0) != 0x80) return 0;
    }
    return 1;
}

/* Whether this program sends the command line itself; the state dir and namespace it goes to, and where its
 * first word is. */
static int sent_here(int argc, char **argv, const char **state_dir, const char **netns, int *first) {
    const char *env_netns = getenv("NETCORE_NETNS"), *env_state = getenv("NETCORE_STATE_DIR");
    *netns = env_netns && *env_netns ? env_netns : NULL;
    *state_dir = env_state && *env_state ? env_state : NETCORE_STATE_DIR_DEFAULT;
    int at = 1;
    while (at < argc && strncmp(argv[at], "--", 2) == 0) {
        const char *equals = strchr(argv[at], '=');
        size_t length = equals ? (size_t)(equals - argv[at]) : strlen(argv[at]);
        const char **target = length == 7 && strncmp(argv[at], "--netns", 7) == 0       ? netns
                              : length == 11 && strncmp(argv[at], "--state-dir", 11) == 0 ? state_dir
                                                                                          : NULL;
        if (!target) return 0;
        if (equals) {
            *target = equals + 1;
        } else {
            if (++at == argc || argv[at][0] == '-') return 0;
            *target = argv[at];
        }
        at++;
    }
    if (at == argc || !listed(NETCORE_COMMANDS, argv[at])) return 0;
    *first = at;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 0;
        if (strcmp(argv[i], "--") == 0) return 0; /* run -- CMD: the command runs in this terminal */
        if (!valid_utf8((const unsigned char *)argv[i])) return 0;
    }
    if (strcmp(argv[at], "network") == 0) { /* two words, the second right after the first */
        if (at + 1 == argc || argv[at + 1][0] == '-') return 0;
        char verb[64];
        if (snprintf(verb, sizeof verb, "network %s", argv[at + 1]) >= (int)sizeof verb) return 0;
        if (listed(NETCORE_NOT_SENT, verb)) return 0;
    }
    if ((*netns && !valid_utf8((const unsigned char *)*netns)) || !valid_utf8((const unsigned char *)*state_dir))
        return 0;
    return 1;
}

static int privileged(void) { /* CAP_NET_ADMIN and CAP_SYS_ADMIN in the effective set */
    FILE *status = fopen("/proc/self/status", "r");
    if (!status) return 0;
    char line[256];
    unsigned long long effective = 0;
    int found = 0;
    while (fgets(line, sizeof line, status))
        if (sscanf(line, "CapEff: %llx", &effective) == 1) {
            found = 1;
            break;
        }
    fclose(status);
    return found && (effective >> CAP_NET_ADMIN_BIT & 1) && (effective >> CAP_SYS_ADMIN_BIT & 1);
}

/* -- the request: one JSON line ---------------------------------------------------------------------------- */

struct buffer {
    char *data;
    size_t length, size;
};

static void put(struct buffer *b, const char *data, size_t length) {
    if (b->length + length + 1 > b->size) {
        size_t size = (b->length + length + 1) * 2;
        char *grown = realloc(b->data, size);
        if (!grown) {
            fputs("netcore: out of memory\n", stderr);
            exit(1);
        }
        b->data = grown;
        b->size = size;
    }
    memcpy(b->data + b->length, data, length);
    b->length += length;
    b->data[b->length] = 0;
}

static void put_string(struct buffer *b, const char *s) { /* a JSON string; s is valid UTF-8 */
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char escaped[2] = {'\\', (char)c};
            put(b, escaped, 2);
        } else if (c < 0x20) {
            char escaped[8];
            snprintf(escaped, sizeof escaped, "\\u%04x", c);
            put(b, escaped, 6);
        } else {
            put(b, s, 1);
        }
    }
    put(b, "\"", 1);
}

extern char **environ;

/* ,"cwd":"...","environ":{"NAME":"VALUE",...}: what a Compose command's line carries; 0 (nothing written) when
 * the directory cannot be read or it or a variable is not UTF-8 (the Python client sends what Python reads) */
static int put_context(struct buffer *b) {
    char *cwd = getcwd(NULL, 0);
    if (!cwd || !valid_utf8((const unsigned char *)cwd)) {
        free(cwd);
        return 0;
    }
    for (char **entry = environ; *entry; entry++)
        if (!valid_utf8((const unsigned char *)*entry)) {
            free(cwd);
            return 0;
        }
    put(b, ",\"cwd\":", 7);
    put_string(b, cwd);
    free(cwd);
    put(b, ",\"environ\":{", 12);
    int members = 0;
    for (char **entry = environ; *entry; entry++) {
        char *equals = strchr(*entry, '=');
        if (!equals || equals == *entry) continue; /* as Python's os.environ: no name, no variable */
        size_t length = (size_t)(equals - *entry) + 1;
        int again = 0; /* a name set twice: the first one, as os.environ and getenv(3) take it */
        for (char **earlier = environ; earlier < entry && !again; earlier++)
            again = strncmp(*earlier, *entry, length) == 0;
        if (again) continue;
        if (members++) put(b, ",", 1);
        char *name = strndup(*entry, (size_t)(equals - *entry));
        if (!name) {
            fputs("netcore: out of memory\n", stderr);
            exit(1);
        }
        put_string(b, name);
        free(name);
        put(b, ":", 1);
        put_string(b, equals + 1);
    }
    put(b, "}", 1);
    return 1;
}

/* -- a reply line: {"out": TEXT} | {"err": TEXT} | {"exit": N, ...} --------------------------------------- */

struct reply {
    char *out, *err; /* decoded, malloc'ed */
    int has_exit, exit, parse, interruptible;
};

static const char *skip_space(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    return s;
}

static void put_utf8(struct buffer *b, unsigned code) {
    char bytes[4];
    size_t n;
    if (code < 0x80) {
        bytes[0] = (char)code, n = 1;
    } else if (code < 0x800) {
        bytes[0] = (char)(0xC0 | code >> 6), bytes[1] = (char)(0x80 | (code & 0x3F)), n = 2;
    } else if (code < 0x10000) {
        bytes[0] = (char)(0xE0 | code >> 12), bytes[1] = (char)(0x80 | (code >> 6 & 0x3F));
        bytes[2] = (char)(0x80 | (code & 0x3F)), n = 3;
    } else {
        bytes[0] = (char)(0xF0 | code >> 18), bytes[1] = (char)(0x80 | (code >> 12 & 0x3F));
        bytes[2] = (char)(0x80 | (code >> 6 & 0x3F)), bytes[3] = (char)(0x80 | (code & 0x3F)), n = 4;
    }
    put(b, bytes, n);
}

static int hex4(const char *s, unsigned *value) {
    *value = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        unsigned digit = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                         : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
        if (digit == 16) return 0;
        *value = *value << 4 | digit;
    }
    return 1;
}

/* A JSON string at s (its opening quote); decoded into *decoded when given. Where it ends, or NULL. */
static const char *string_at(const char *s, char **decoded) {
    struct buffer b = {0};
    put(&b, "", 0);
    for (s++; *s != '"'; s++) {
        if (!*s) goto bad;
        if (*s != '\\') {
            put(&b, s, 1);
            continue;
        }
        s++;
        const char *simple = strchr("\"\\/bfnrt", *s);
        if (*s && simple) {
            put(&b, &"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"], 1);
        } else if (*s == 'u') {
            unsigned code, low;
            if (!hex4(s + 1, &code)) goto bad;
            s += 4;
            if (code >= 0xD800 && code < 0xDC00 && s[1] == '\\' && s[2] == 'u' && hex4(s + 3, &low) && low >= 0xDC00
                && low < 0xE000) {
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                s += 6;
            }
            put_utf8(&b, code);
        } else {
            goto bad;
        }
    }
    if (decoded) *decoded = b.data;
    else free(b.data);
    return s + 1;
bad:
    free(b.data);
    return NULL;
}

static const char *value_at(const char *s); /* skipped: where the JSON value at s ends, or NULL */

static const char *members_at(const char *s, char close) { /* the inside of an object or an array */
    s = skip_space(s + 1);
    if (*s == close) return s + 1;
    for (;;) {
        if (close == '}') {
            if (*s != '"' || !(s = string_at(s, NULL))) return NULL;
            s = skip_space(s);
            if (*s++ != ':') return NULL;
        }
        if (!(s = value_at(skip_space(s)))) return NULL;
        s = skip_space(s);
        if (*s == close) return s + 1;
        if (*s++ != ',') return NULL;
        s = skip_space(s);
    }
}

static const char *value_at(const char *s) {
    if (*s == '"') return string_at(s, NULL);
    if (*s == '{') return members_at(s, '}');
    if (*s == '[') return members_at(s, ']');
    const char *start = s;
    while (*s && strchr("0123456789+-.eEtruefalsn", *s)) s++;
    return s > start ? s : NULL;
}

static int parse_reply(const char *line, struct reply *r) {
    memset(r, 0, sizeof *r);
    const char *s = skip_space(line);
    if (*s != '{') return 0;
    s = skip_space(s + 1);
    while (*s != '}') {
        char *key;
        if (*s != '"' || !(s = string_at(s, &key))) return 0;
        s = skip_space(s);
        if (*s++ != ':') {
            free(key);
            return 0;
        }
        s = skip_space(s);
        if ((strcmp(key, "out") == 0 || strcmp(key, "err") == 0) && *s == '"') {
            s = string_at(s, key[0] == 'o' ? &r->out : &r->err);
        } else if (strcmp(key, "exit") == 0) {
            char *end;
            long status = strtol(s, &end, 10);
            r->has_exit = end > s, r->exit = (int)status, s = end;
        } else {
            r->parse |= strcmp(key, "parse") == 0;
            r->interruptible |= strcmp(key, "interruptible") == 0 && strncmp(s, "true", 4) == 0;
            s = value_at(s);
        }
        free(key);
        if (!s) return 0;
        s = skip_space(s);
        if (*s == ',') s = skip_space(s + 1);
        else if (*s != '}') return 0;
    }
    return r->out || r->err || r->has_exit;
}

/* -- the exchange ---------------------------------------------------------------------------------------------- */

static void write_all(int fd, const char *data, size_t length) {
    while (length) {
        ssize_t written = write(fd, data, length);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) exit(141); /* the reader went away (netcore ps | head): quietly, as SIGPIPE would */
        data += written, length -= (size_t)written;
    }
}

static void say(const char *line) {
    write_all(2, "netcore: ", 9);
    write_all(2, line, strlen(line));
    write_all(2, "\n", 1);
}

int main(int argc, char **argv) {
    original_argv = argv;
    const char *state_dir, *netns;
    int first = 0;
    if (!sent_here(argc, argv, &state_dir, &netns, &first) || !privileged()) python_client();
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(address.sun_path, sizeof address.sun_path, "%s/netcored.sock", state_dir)
        >= sizeof address.sun_path)
        python_client();
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) != 0) python_client(); /* it starts one */
    agent = sock;
    struct sigaction on_interrupt = {.sa_handler = interrupted};
    sigaction(SIGINT, &on_interrupt, NULL);

    struct buffer request = {0};
    char version[16];
    snprintf(version, sizeof version, "%d", NETCORE_PROTOCOL);
    put(&request, "{\"netcored\":", 12);
    put(&request, version, strlen(version));
    put(&request, ",\"argv\":[", 9);
    for (int i = 1; i < argc; i++) {
        if (i > 1) put(&request, ",", 1);
        put_string(&request, argv[i]);
    }
    put(&request, "],\"netns\":", 10);
    if (netns) put_string(&request, netns);
    else put(&request, "null", 4);
    const char *debug = getenv("NETCORE_DEBUG");
    put(&request, debug && strcmp(debug, "1") == 0 ? ",\"debug\":true" : ",\"debug\":false",
        debug && strcmp(debug, "1") == 0 ? 13 : 14);
    if (listed(NETCORE_CONTEXT_COMMANDS, argv[first]) && !put_context(&request)) python_client();
    put(&request, "}\n", 2);
    for (size_t sent = 0; sent < request.length;) {
        ssize_t n = send(sock, request.data + sent, request.length - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) python_client(); /* nothing was taken: the Python client tries, and says why */
        sent += (size_t)n;
    }

    struct buffer pending = {0};
    char *held = NULL; /* the first line, if it refuses the protocol: said only if the command was not given back */
    int lines = 0;
    for (;;) {
        char *newline = pending.data ? memchr(pending.data, '\n', pending.length) : NULL;
        if (!newline) {
            char chunk[65536];
            ssize_t n = recv(sock, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            put(&pending, chunk, (size_t)n);
            continue;
        }
        *newline = 0;
        struct reply r;
        if (!parse_reply(pending.data, &r)) {
            say("netcored sent a reply this netcore cannot read; the next command starts a new one");
            return 1;
        }
        size_t used = (size_t)(newline - pending.data) + 1;
        memmove(pending.data, newline + 1, pending.length - used + 1);
        pending.length -= used;
        lines++;
        if (r.has_exit) {
            if (r.parse || (held && r.exit == USAGE_STATUS)) python_client(); /* not run: the usual way says why */
            if (held) say(held);
            return r.exit;
        }
        if (r.out) {
            if (r.interruptible) interruptible = 1;
            write_all(1, r.out, strlen(r.out));
        } else if (lines == 1 && strncmp(r.err, "this netcore speaks protocol", 28) == 0) {
            held = r.err;
            continue;
        } else {
            say(r.err);
        }
        free(r.out);
        free(r.err);
    }
    say("netcored ended before it answered; the next command starts a new one, which repairs what it left");
    return 1;
}
