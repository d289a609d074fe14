/* dnsd.io._replay: a quiet UDP listener's loop in C, sending the replies Python has remembered.
 *
 * Below some fifty thousand queries a second every query is a wake-up of its own, and there the
 * interpreter's share of a wake-up (the socket module's address tuples, the frames of the
 * answering) cost more than dnsmasq spends on the whole query (README, Benchmarks; issue 18).
 * This loop takes that share away for the queries that need no decision: a query whose reply the
 * answerer has remembered (``dnsd.core.answer.Answerer``: plain UDP, a name of ours that does not
 * rotate) is answered here, from the very dict the answerer keeps, without a Python frame. Every
 * other datagram goes back to Python, which answers it as before. What to remember, for which
 * client, and when to forget stays in Python; this file only looks up and sends.
 *
 * replay(fd, buffer, cell, quiet, last, run, stats, patience)
 *     Read datagrams from the UDP socket ``fd`` into ``buffer`` (a writable buffer, at least 12
 *     bytes), one at a time, blocking without the GIL. A datagram that was waiting in the queue when
 *     its read was asked, or that arrived within ``quiet`` seconds of the one before (``last``: the
 *     arrival of the one before the first, on time.time()'s clock), counts towards being behind. The
 *     arrival times are the kernel's (SCM_TIMESTAMPNS, which dnsd.io.udp turns on for the socket with
 *     SO_TIMESTAMPNS), so neither the time the loop spent on the datagram before (on a slow or busy
 *     machine longer than any fixed limit, while the queue grows) nor the thread losing its CPU after
 *     a read counts; without a time stamp, the time the read returned stands in for its arrival,
 *     and a read that returned within ``quiet`` of being asked took a queued datagram. ``patience``
 *     such datagrams in a row (``run`` of them came before the first, in earlier calls) mean the
 *     listener is behind, and the last of them goes back to Python, which then reads in batches.
 *     For each other datagram: if ``cell`` is a list
 *     whose first item, ``table``, is a dict (read anew for every datagram:
 *     ``Answerer.replay_table``), ``table[address]`` (address: the sender's 4 or 16 address bytes) is a dict and
 *     ``table[address][datagram[2:]]`` is bytes, send ``datagram[:2] + that`` to the sender
 *     (dropped if it cannot go at once, as UDP may), add 1 to ``stats.answered_udp`` and read on.
 *     Otherwise return ``(length, client, address, woke, run, last)`` for Python to answer: the
 *     datagram is ``buffer[:length]``, ``client`` the sender as the socket module spells it
 *     ((ip, port), or (ip, port, flowinfo, scope_id) for IPv6, the ip without a "%scope"),
 *     ``address`` its key, or None if ``table`` already leads it to a memo (nothing to remember), ``woke``
 *     the time.monotonic() its read returned, ``run`` how many datagrams in a row, this one included,
 *     counted towards being behind (the listener is behind from ``patience``) and ``last`` its arrival
 *     (for the next call). A shut-down socket returns ``(0, None, None, woke, 0, last)``. Raises
 *     OSError if a read fails (EINTR is retried).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

static PyObject *answered_name; /* "answered_udp", interned */
static PyObject *one;

static PyObject *client_tuple(const struct sockaddr_storage *from)
{
    char ip[INET6_ADDRSTRLEN];
    if (from->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)from;
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
        return Py_BuildValue("(si)", ip, ntohs(v4->sin_port));
    }
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)from;
    inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
    return Py_BuildValue("(siII)", ip, ntohs(v6->sin6_port), (unsigned int)ntohl(v6->sin6_flowinfo),
                         (unsigned int)v6->sin6_scope_id);
}

static PyObject *address_key(const struct sockaddr_storage *from)
{
    if (from->ss_family == AF_INET)
        return PyBytes_FromStringAndSize((const char *)&((const struct sockaddr_in *)from)->sin_addr, 4);
    return PyBytes_FromStringAndSize((const char *)&((const struct sockaddr_in6 *)from)->sin6_addr, 16);
}

static double seconds_of(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static double monotonic(void)
{
    return seconds_of(CLOCK_MONOTONIC); /* the clock of time.monotonic() */
}

/* When the datagram of ``message`` arrived (CLOCK_REALTIME, seconds), from its SCM_TIMESTAMPNS; -1 without one. */
static double arrival(struct msghdr *message)
{
    for (struct cmsghdr *part = CMSG_FIRSTHDR(message); part != NULL; part = CMSG_NXTHDR(message, part)) {
        if (part->cmsg_level == SOL_SOCKET && part->cmsg_type == SCM_TIMESTAMPNS
            && part->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec stamp;
            memcpy(&stamp, CMSG_DATA(part), sizeof stamp);
            return (double)stamp.tv_sec + (double)stamp.tv_nsec * 1e-9;
        }
    }
    return -1.0;
}

/* The remembered reply tail for this datagram, borrowed (valid while the GIL is held), or NULL (no error set);
 * *known is set to 1 if the table leads the sender's key to a memo (the client is remembered already). */
static PyObject *remembered(PyObject *cell, PyObject *key, const char *data, Py_ssize_t length, int *known)
{
    if (!PyList_CheckExact(cell) || PyList_GET_SIZE(cell) < 1)
        return NULL;
    PyObject *table = PyList_GET_ITEM(cell, 0); /* read per datagram: a new snapshot puts a new table there */
    if (!PyDict_CheckExact(table))
        return NULL;
    PyObject *replies = PyDict_GetItemWithError(table, key);
    if (replies == NULL || !PyDict_CheckExact(replies)) {
        PyErr_Clear();
        return NULL;
    }
    *known = 1;
    PyObject *question = PyBytes_FromStringAndSize(data + 2, length - 2);
    if (question == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *tail = PyDict_GetItemWithError(replies, question);
    Py_DECREF(question);
    if (tail == NULL || !PyBytes_CheckExact(tail)) {
        PyErr_Clear();
        return NULL;
    }
    return tail;
}

static int count_reply(PyObject *stats)
{
    PyObject *count = PyObject_GetAttr(stats, answered_name);
    if (count == NULL)
        return -1;
    PyObject *more = PyNumber_Add(count, one);
    Py_DECREF(count);
    if (more == NULL)
        return -1;
    int failed = PyObject_SetAttr(stats, answered_name, more);
    Py_DECREF(more);
    return failed;
}

static PyObject *replay(PyObject *module, PyObject *args)
{
    (void)module;
    int fd;
    Py_buffer buffer;
    PyObject *cell, *stats;
    double quiet, last;
    int run, patience;
    if (!PyArg_ParseTuple(args, "iw*OddiOi:replay", &fd, &buffer, &cell, &quiet, &last, &run, &stats, &patience))
        return NULL;
    PyObject *result = NULL;
    char *data = buffer.buf;
    if (buffer.len < 12) {
        PyErr_SetString(PyExc_ValueError, "replay: the buffer holds less than a DNS header");
        goto done;
    }
    for (;;) {
        struct sockaddr_storage from;
        char control[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec part = {data, (size_t)buffer.len};
        struct msghdr message = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &part, .msg_iovlen = 1,
                                 .msg_control = control, .msg_controllen = sizeof control};
        ssize_t length;
        int error;
        double asked, returned, woke;
        Py_BEGIN_ALLOW_THREADS
        asked = seconds_of(CLOCK_REALTIME); /* the clock of the kernel's arrival times */
        length = recvmsg(fd, &message, 0);
        error = errno;
        returned = seconds_of(CLOCK_REALTIME); /* before taking the GIL back: waiting for it is not waiting */
        woke = monotonic();
        Py_END_ALLOW_THREADS
        socklen_t from_length = message.msg_namelen;
        if (length < 0) {
            if (error == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto done;
                continue;
            }
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        if (from_length == 0 || (from.ss_family != AF_INET && from.ss_family != AF_INET6)) {
            result = Py_BuildValue("(nOOdid)", (Py_ssize_t)0, Py_None, Py_None, woke, 0, last); /* shut down */
            goto done;
        }
        PyObject *key = address_key(&from);
        if (key == NULL)
            goto done;
        double arrived = arrival(&message);
        int queued = arrived >= 0 ? arrived <= asked : returned - asked <= quiet;
        if (arrived < 0)
            arrived = returned;
        run = queued || arrived - last <= quiet ? run + 1 : 0;
        last = arrived;
        int known = 0;
        PyObject *tail = (run < patience && length >= 12) ? remembered(cell, key, data, length, &known) : NULL;
        if (tail == NULL) {
            if (known) { /* nothing for Python to remember: a rotating set, EDNS, a forwarded name... */
                Py_DECREF(key);
                key = Py_NewRef(Py_None);
            }
            PyObject *client = client_tuple(&from);
            if (client != NULL)
                result = Py_BuildValue("(nNNdid)", (Py_ssize_t)length, client, key, woke, run, last);
            else
                Py_DECREF(key);
            goto done;
        }
        Py_DECREF(key);
        /* the reply: the query's ID, then the remembered tail, straight from the bytes object */
        struct iovec parts[2] = {{data, 2}, {PyBytes_AS_STRING(tail), (size_t)PyBytes_GET_SIZE(tail)}};
        struct msghdr reply = {.msg_name = &from, .msg_namelen = from_length, .msg_iov = parts, .msg_iovlen = 2};
        (void)sendmsg(fd, &reply, MSG_DONTWAIT); /* no route, buffer full: dropped, as UDP may */
        if (count_reply(stats) < 0)
            goto done;
    }
done:
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"replay", replay, METH_VARARGS,
     "replay(fd, buffer, cell, quiet, last, run, stats, patience) -> (length, client, address, woke, run, last): "
     "send remembered "
     "replies until a datagram needs Python (see dnsd/io/_replay.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "dnsd.io._replay", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__replay(void)
{
    answered_name = PyUnicode_InternFromString("answered_udp");
    one = PyLong_FromLong(1);
    if (answered_name == NULL || one == NULL)
        return NULL;
    return PyModule_Create(&module);
}
