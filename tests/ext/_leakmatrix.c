/*
 * _leakmatrix: a CPython extension full of deliberate leaks, each with a
 * clean twin, plus clean "look-alikes" and probe helpers.  It is the test
 * bed of the psleak test-suite and benchmark (see tests/leakmatrix.py for
 * the catalogue that maps every function to the error psleak must raise).
 *
 * Naming:
 *   leak_*       leaks a resource on every call (or on some calls)
 *   clean_*      the leak's twin: same work, resource released
 *   lookalike_*  clean code whose memory/resource profile resembles a leak
 *   hold_* / release_* / start_named_thread / stop_named_thread
 *                probe helpers (hold a known amount of a resource)
 *   close_leaked_fds / release_leaked_threads
 *                test-suite hygiene: undo what the fd / thread leaks did
 *
 * Every function checks every allocation and syscall and raises
 * MemoryError / OSError on failure; none of them crashes.
 */

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <unistd.h>
#include <netinet/in.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* Make the compiler believe `p` (and the memory behind it) is used, so it
 * can neither drop a malloc whose result is unused nor the stores that
 * touch the pages nor a malloc/free pair. */
static inline void
escape(void *p)
{
    __asm__ __volatile__("" : : "g"(p) : "memory");
}

static long
page_size(void)
{
    static long ps = 0;
    if (ps <= 0) {
        ps = sysconf(_SC_PAGESIZE);
        if (ps <= 0)
            ps = 4096;
    }
    return ps;
}

/* write one byte in every page of [p, p+n) */
static void
touch_pages(void *p, size_t n)
{
    volatile unsigned char *c = (volatile unsigned char *)p;
    size_t ps = (size_t)page_size();
    for (size_t off = 0; off < n; off += ps)
        c[off] = (unsigned char)(off / ps + 1);
    if (n)
        c[n - 1] = 1;
    escape(p);
}

static pid_t
current_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static PyObject *
oserror_from_code(int code)
{
    errno = code;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* ======================================================================
 * malloc family
 * ====================================================================== */

static PyObject *
malloc_leak_impl(size_t n, int leak, int full_touch)
{
    void *p = malloc(n);
    if (p == NULL)
        return PyErr_NoMemory();
    if (full_touch)
        memset(p, 0xAB, n);
    else
        memset(p, 0xAB, n < 64 ? n : 64);
    escape(p);
    if (!leak)
        free(p);
    Py_RETURN_NONE;
}

static PyObject *leak_malloc_small(PyObject *m, PyObject *a) { return malloc_leak_impl(16, 1, 1); }
static PyObject *clean_malloc_small(PyObject *m, PyObject *a) { return malloc_leak_impl(16, 0, 1); }
static PyObject *leak_malloc_tiny(PyObject *m, PyObject *a) { return malloc_leak_impl(8, 1, 1); }
static PyObject *clean_malloc_tiny(PyObject *m, PyObject *a) { return malloc_leak_impl(8, 0, 1); }
static PyObject *leak_malloc_page(PyObject *m, PyObject *a) { return malloc_leak_impl(4096, 1, 1); }
static PyObject *clean_malloc_page(PyObject *m, PyObject *a) { return malloc_leak_impl(4096, 0, 1); }
/* 256 KiB: above glibc's initial M_MMAP_THRESHOLD (128 KiB), memset so
 * that every page is resident */
static PyObject *leak_malloc_huge(PyObject *m, PyObject *a) { return malloc_leak_impl(256 * KIB, 1, 1); }
static PyObject *clean_malloc_huge(PyObject *m, PyObject *a) { return malloc_leak_impl(256 * KIB, 0, 1); }

static PyObject *
calloc_impl(int leak)
{
    unsigned char *p = calloc(32, 8); /* 256 B */
    if (p == NULL)
        return PyErr_NoMemory();
    p[0] = 1;
    escape(p);
    if (!leak)
        free(p);
    Py_RETURN_NONE;
}
static PyObject *leak_calloc(PyObject *m, PyObject *a) { return calloc_impl(1); }
static PyObject *clean_calloc(PyObject *m, PyObject *a) { return calloc_impl(0); }

static PyObject *
realloc_impl(int leak)
{
    char *p = malloc(16);
    if (p == NULL)
        return PyErr_NoMemory();
    memset(p, 1, 16);
    escape(p);
    char *q = realloc(p, 512); /* grow the fresh block */
    if (q == NULL) {
        free(p);
        return PyErr_NoMemory();
    }
    memset(q + 16, 2, 512 - 16);
    escape(q);
    if (!leak)
        free(q);
    Py_RETURN_NONE;
}
static PyObject *leak_realloc(PyObject *m, PyObject *a) { return realloc_impl(1); }
static PyObject *clean_realloc(PyObject *m, PyObject *a) { return realloc_impl(0); }

static const char strdup_src[] =
    "psleak leakmatrix strdup payload: 0123456789abcdefghijklmnopqrstuvwxyz";

static PyObject *
strdup_impl(int leak)
{
    char *p = strdup(strdup_src);
    if (p == NULL)
        return PyErr_NoMemory();
    escape(p);
    if (!leak)
        free(p);
    Py_RETURN_NONE;
}
static PyObject *leak_strdup(PyObject *m, PyObject *a) { return strdup_impl(1); }
static PyObject *clean_strdup(PyObject *m, PyObject *a) { return strdup_impl(0); }

static PyObject *
memalign_impl(int leak)
{
    void *p = NULL;
    int rc = posix_memalign(&p, 64, 256);
    if (rc != 0) {
        if (rc == ENOMEM)
            return PyErr_NoMemory();
        return oserror_from_code(rc);
    }
    memset(p, 3, 256);
    escape(p);
    if (!leak)
        free(p);
    Py_RETURN_NONE;
}
static PyObject *leak_posix_memalign(PyObject *m, PyObject *a) { return memalign_impl(1); }
static PyObject *clean_posix_memalign(PyObject *m, PyObject *a) { return memalign_impl(0); }

/* ======================================================================
 * mmap
 * ====================================================================== */

static PyObject *
mmap_impl(size_t n, int leak)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return PyErr_SetFromErrno(PyExc_OSError);
    touch_pages(p, n);
    if (!leak && munmap(p, n) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}
static PyObject *leak_mmap(PyObject *m, PyObject *a) { return mmap_impl(64 * KIB, 1); }
static PyObject *clean_mmap(PyObject *m, PyObject *a) { return mmap_impl(64 * KIB, 0); }
static PyObject *leak_mmap_large(PyObject *m, PyObject *a) { return mmap_impl(1 * MIB, 1); }
static PyObject *clean_mmap_large(PyObject *m, PyObject *a) { return mmap_impl(1 * MIB, 0); }

/* ======================================================================
 * intermittent: 64 B lost on one call in ten
 * ====================================================================== */

static unsigned long intermittent_calls = 0;
static unsigned long intermittent_clean_calls = 0;

static PyObject *
leak_intermittent(PyObject *m, PyObject *a)
{
    if (++intermittent_calls % 10 == 0)
        return malloc_leak_impl(64, 1, 1);
    Py_RETURN_NONE;
}

static PyObject *
clean_intermittent(PyObject *m, PyObject *a)
{
    if (++intermittent_clean_calls % 10 == 0)
        return malloc_leak_impl(64, 0, 1);
    Py_RETURN_NONE;
}

/* ======================================================================
 * appended: 8 B appended per call to one buffer whose capacity realloc
 * grows by an eighth when full (a growable array); the twin starts again
 * from the front once 64 KiB are used, so its buffer stops growing
 * ====================================================================== */

typedef struct {
    char *data;
    size_t len, cap;
} appended_t;

static appended_t appended[2];

static PyObject *
appended_impl(int leak)
{
    appended_t *a = &appended[leak];
    if (!leak && a->len + 8 > 64 * KIB)
        a->len = 0;
    if (a->len + 8 > a->cap) {
        size_t cap = a->cap + a->cap / 8 + 64;
        char *p = realloc(a->data, cap);
        if (p == NULL)
            return PyErr_NoMemory();
        a->data = p;
        a->cap = cap;
    }
    memset(a->data + a->len, 3, 8);
    a->len += 8;
    escape(a->data);
    Py_RETURN_NONE;
}
static PyObject *leak_appended(PyObject *m, PyObject *a) { return appended_impl(1); }
static PyObject *clean_appended(PyObject *m, PyObject *a) { return appended_impl(0); }

/* ======================================================================
 * rare: 200 B lost on one call in 500 (none in the first 400 calls after a
 * warm-up of 10: a leak that two runs of 200 never see)
 * ====================================================================== */

static unsigned long rare_leak_calls = 0;
static unsigned long rare_clean_calls = 0;

static PyObject *
leak_rare(PyObject *m, PyObject *a)
{
    if (++rare_leak_calls % 500 == 0)
        return malloc_leak_impl(200, 1, 1);
    Py_RETURN_NONE;
}

static PyObject *
clean_rare(PyObject *m, PyObject *a)
{
    if (++rare_clean_calls % 500 == 0)
        return malloc_leak_impl(200, 0, 1);
    Py_RETURN_NONE;
}

/* ======================================================================
 * after_fill: a cache of 150 buffers of 512 B (75 KB) filled by the first
 * calls, one a call, then malloc(32) lost (or freed) on every third call:
 * the leak grows far slower than the cache did in the first run
 * ====================================================================== */

#define FILL_ENTRIES 150
/* volatile: never read back, the stores would be dropped, and the blocks lost */
static void *volatile fill_cache[2][FILL_ENTRIES];
static unsigned long fill_calls[2];

static PyObject *
after_fill_impl(int leak)
{
    unsigned long n = fill_calls[leak]++;
    if (n < FILL_ENTRIES) {
        void *p = malloc(512);
        if (p == NULL)
            return PyErr_NoMemory();
        memset(p, 0xAB, 512);
        fill_cache[leak][n] = p;
    }
    if (n % 3 == 0)
        return malloc_leak_impl(32, leak, 1);
    Py_RETURN_NONE;
}

static PyObject *leak_after_fill(PyObject *m, PyObject *a) { return after_fill_impl(1); }
static PyObject *clean_after_fill(PyObject *m, PyObject *a) { return after_fill_impl(0); }

/* ======================================================================
 * malloc in a worker thread (another malloc arena)
 * ====================================================================== */

static void *
thread_malloc_body(void *arg)
{
    int leak = (int)(intptr_t)arg;
    void *p = malloc(KIB);
    if (p == NULL)
        return (void *)(intptr_t)ENOMEM;
    memset(p, 5, KIB);
    escape(p);
    if (!leak)
        free(p);
    return NULL; /* the block is stored nowhere */
}

static PyObject *
thread_malloc_impl(int leak)
{
    pthread_t t;
    void *ret = NULL;
    int rc = pthread_create(&t, NULL, thread_malloc_body, (void *)(intptr_t)leak);
    if (rc != 0)
        return oserror_from_code(rc);
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_join(t, &ret);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return oserror_from_code(rc);
    if (ret != NULL)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
static PyObject *leak_thread_malloc(PyObject *m, PyObject *a) { return thread_malloc_impl(1); }
static PyObject *clean_thread_malloc(PyObject *m, PyObject *a) { return thread_malloc_impl(0); }

/* ======================================================================
 * Python allocators and reference counting
 * ====================================================================== */

/* 64 bytes from a Python allocator, freed or not */
static PyObject *
pyalloc_impl(void *(*alloc)(size_t), void (*release)(void *), int byte, int leak)
{
    void *p = alloc(64);
    if (p == NULL)
        return PyErr_NoMemory();
    memset(p, byte, 64);
    escape(p);
    if (!leak)
        release(p);
    Py_RETURN_NONE;
}

static PyObject *leak_pymem_malloc(PyObject *m, PyObject *a) { return pyalloc_impl(PyMem_Malloc, PyMem_Free, 6, 1); }
static PyObject *clean_pymem_malloc(PyObject *m, PyObject *a) { return pyalloc_impl(PyMem_Malloc, PyMem_Free, 6, 0); }
static PyObject *leak_pyobject_malloc(PyObject *m, PyObject *a) { return pyalloc_impl(PyObject_Malloc, PyObject_Free, 7, 1); }
static PyObject *clean_pyobject_malloc(PyObject *m, PyObject *a) { return pyalloc_impl(PyObject_Malloc, PyObject_Free, 7, 0); }

/* a fresh 100-byte bytes object */
static PyObject *
new_bytes100(void)
{
    PyObject *b = PyBytes_FromStringAndSize(NULL, 100);
    if (b != NULL)
        memset(PyBytes_AS_STRING(b), 'x', 100);
    return b;
}

/* a fresh list of 10 fresh large ints */
static PyObject *
new_list10(void)
{
    PyObject *l = PyList_New(10);
    if (l == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < 10; i++) {
        PyObject *v = PyLong_FromLongLong(1000000000LL + i);
        if (v == NULL) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, v);
    }
    return l;
}

/* a fresh big int (10**60, i.e. several digits) */
static PyObject *
new_biglong(void)
{
    return PyLong_FromString("1000000000000000000000000000000000000000000000000000000000000", NULL, 10);
}

static PyObject *
decref_impl(PyObject *(*make)(void), int leak)
{
    PyObject *o = make();
    if (o == NULL)
        return NULL;
    if (!leak)
        Py_DECREF(o);
    /* else: the reference is dropped on the floor */
    Py_RETURN_NONE;
}
static PyObject *leak_missing_decref_bytes(PyObject *m, PyObject *a) { return decref_impl(new_bytes100, 1); }
static PyObject *clean_missing_decref_bytes(PyObject *m, PyObject *a) { return decref_impl(new_bytes100, 0); }
static PyObject *leak_missing_decref_list(PyObject *m, PyObject *a) { return decref_impl(new_list10, 1); }
static PyObject *clean_missing_decref_list(PyObject *m, PyObject *a) { return decref_impl(new_list10, 0); }
static PyObject *leak_missing_decref_long(PyObject *m, PyObject *a) { return decref_impl(new_biglong, 1); }
static PyObject *clean_missing_decref_long(PyObject *m, PyObject *a) { return decref_impl(new_biglong, 0); }

static PyObject *
leak_extra_incref(PyObject *m, PyObject *a)
{
    PyObject *b = new_bytes100();
    if (b == NULL)
        return NULL;
    Py_INCREF(b); /* one reference too many: the caller can never free it */
    return b;
}

static PyObject *
clean_extra_incref(PyObject *m, PyObject *a)
{
    return new_bytes100();
}

/* take a buffer of `obj` (default: a fresh 1 KiB bytearray) */
static PyObject *
buffer_impl(PyObject *args, int leak)
{
    PyObject *obj = NULL;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "|O", &obj))
        return NULL;
    if (obj == NULL || obj == Py_None) {
        obj = PyByteArray_FromStringAndSize(NULL, 1024);
        if (obj == NULL)
            return NULL;
        memset(PyByteArray_AS_STRING(obj), 'b', 1024);
    }
    else {
        Py_INCREF(obj);
    }
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) {
        Py_DECREF(obj);
        return NULL;
    }
    if (!leak)
        PyBuffer_Release(&view);
    /* when leaking, view.obj keeps a reference to obj for ever */
    Py_DECREF(obj);
    Py_RETURN_NONE;
}
static PyObject *leak_buffer(PyObject *m, PyObject *args) { return buffer_impl(args, 1); }
static PyObject *clean_buffer(PyObject *m, PyObject *args) { return buffer_impl(args, 0); }

/* ======================================================================
 * file descriptors
 * ====================================================================== */

/* Leaked fds are remembered (only) so that close_leaked_fds() can undo
 * them between tests; from the process' point of view they are open fds
 * nobody will ever close. */
static int *leaked_fds = NULL;
static size_t leaked_fds_len = 0, leaked_fds_cap = 0;
static int dup_source_fd = -1; /* /dev/null, opened at import time */

static int
remember_fd(int fd)
{
    if (leaked_fds_len == leaked_fds_cap) {
        size_t ncap = leaked_fds_cap ? leaked_fds_cap * 2 : 64;
        int *n = realloc(leaked_fds, ncap * sizeof(int));
        if (n == NULL)
            return -1;
        leaked_fds = n;
        leaked_fds_cap = ncap;
    }
    leaked_fds[leaked_fds_len++] = fd;
    return 0;
}

/* Finish an fd function: either remember (leak) or close the fds.
 * Returns the fd (or an (fd, fd) tuple) as a Python object. */
static PyObject *
finish_fds(int *fds, int n, int leak)
{
    if (leak) {
        for (int i = 0; i < n; i++) {
            if (remember_fd(fds[i]) != 0) {
                for (int j = i; j < n; j++)
                    close(fds[j]);
                return PyErr_NoMemory();
            }
        }
        if (n == 1)
            return PyLong_FromLong(fds[0]);
        return Py_BuildValue("(ii)", fds[0], fds[1]);
    }
    for (int i = 0; i < n; i++) {
        if (close(fds[i]) != 0) {
            int saved = errno;
            for (int j = i + 1; j < n; j++)
                close(fds[j]);
            return oserror_from_code(saved);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
fd_open_impl(PyObject *args, int leak)
{
    PyObject *path_obj = NULL;
    int fd;
    if (!PyArg_ParseTuple(args, "|O&", PyUnicode_FSConverter, &path_obj))
        return NULL;
    if (path_obj == NULL) {
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
    }
    else {
        const char *path = PyBytes_AS_STRING(path_obj);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
            Py_DECREF(path_obj);
            return NULL;
        }
        Py_DECREF(path_obj);
    }
    return finish_fds(&fd, 1, leak);
}
static PyObject *leak_fd_open(PyObject *m, PyObject *args) { return fd_open_impl(args, 1); }
static PyObject *clean_fd_open(PyObject *m, PyObject *args) { return fd_open_impl(args, 0); }

#define SIMPLE_FD_PAIR(NAME, EXPR)                                          \
    static PyObject *NAME##_impl(int leak)                                  \
    {                                                                       \
        int fd = (EXPR);                                                    \
        if (fd < 0)                                                         \
            return PyErr_SetFromErrno(PyExc_OSError);                       \
        return finish_fds(&fd, 1, leak);                                    \
    }                                                                       \
    static PyObject *leak_fd_##NAME(PyObject *m, PyObject *a)               \
    {                                                                       \
        return NAME##_impl(1);                                              \
    }                                                                       \
    static PyObject *clean_fd_##NAME(PyObject *m, PyObject *a)              \
    {                                                                       \
        return NAME##_impl(0);                                              \
    }

SIMPLE_FD_PAIR(tcp_socket, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))
SIMPLE_FD_PAIR(udp_socket, socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0))
SIMPLE_FD_PAIR(eventfd, eventfd(0, EFD_CLOEXEC))
SIMPLE_FD_PAIR(memfd, (int)syscall(SYS_memfd_create, "leakmatrix", MFD_CLOEXEC))
SIMPLE_FD_PAIR(epoll, epoll_create1(EPOLL_CLOEXEC))
SIMPLE_FD_PAIR(timerfd, timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC))
SIMPLE_FD_PAIR(inotify, inotify_init1(IN_CLOEXEC))

static PyObject *
fd_signalfd_impl(int leak)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR2); /* watched only; its disposition is untouched */
    int fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return finish_fds(&fd, 1, leak);
}
static PyObject *leak_fd_signalfd(PyObject *m, PyObject *a) { return fd_signalfd_impl(1); }
static PyObject *clean_fd_signalfd(PyObject *m, PyObject *a) { return fd_signalfd_impl(0); }

static PyObject *
fd_pipe_impl(int leak)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return finish_fds(fds, 2, leak);
}
static PyObject *leak_fd_pipe(PyObject *m, PyObject *a) { return fd_pipe_impl(1); }
static PyObject *clean_fd_pipe(PyObject *m, PyObject *a) { return fd_pipe_impl(0); }

static PyObject *
fd_socketpair_impl(int leak)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return finish_fds(fds, 2, leak);
}
static PyObject *leak_fd_socketpair(PyObject *m, PyObject *a) { return fd_socketpair_impl(1); }
static PyObject *clean_fd_socketpair(PyObject *m, PyObject *a) { return fd_socketpair_impl(0); }

/* dup(fd) where fd defaults to a /dev/null fd the module opened at import */
static PyObject *
fd_dup_impl(PyObject *args, int leak)
{
    int src = dup_source_fd;
    if (!PyArg_ParseTuple(args, "|i", &src))
        return NULL;
    if (src < 0) {
        PyErr_SetString(PyExc_ValueError, "no fd to duplicate");
        return NULL;
    }
    int fd = fcntl(src, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return finish_fds(&fd, 1, leak);
}
static PyObject *leak_fd_dup(PyObject *m, PyObject *args) { return fd_dup_impl(args, 1); }
static PyObject *clean_fd_dup(PyObject *m, PyObject *args) { return fd_dup_impl(args, 0); }

static PyObject *
close_leaked_fds(PyObject *m, PyObject *a)
{
    size_t n = leaked_fds_len;
    for (size_t i = 0; i < n; i++)
        close(leaked_fds[i]); /* EBADF if the test closed it already: fine */
    leaked_fds_len = 0;
    return PyLong_FromSize_t(n);
}

/* ======================================================================
 * native threads
 * ====================================================================== */

/* Shared start-up handshake: the creator waits until the thread has named
 * itself and published its kernel tid, so that the thread is fully visible
 * (in /proc/self/task, with its name) when the Python call returns. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    pid_t tid;
    int name_rc;
    char name[16];
} handshake_t;

static void
handshake_init(handshake_t *h, const char *name)
{
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->started = 0;
    h->tid = 0;
    h->name_rc = 0;
    strncpy(h->name, name, sizeof(h->name) - 1);
    h->name[sizeof(h->name) - 1] = '\0';
}

static void
handshake_destroy(handshake_t *h)
{
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
}

static void
handshake_signal(handshake_t *h)
{
    int rc = pthread_setname_np(pthread_self(), h->name);
    pthread_mutex_lock(&h->lock);
    h->tid = current_tid();
    h->name_rc = rc;
    h->started = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    /* after this point `h` may be gone */
}

/* wait with the GIL released */
static void
handshake_wait(handshake_t *h)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&h->lock);
    while (!h->started)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    Py_END_ALLOW_THREADS
}

static int
check_thread_name(const char *name)
{
    if (strlen(name) > 15) {
        PyErr_SetString(PyExc_ValueError,
                        "thread name must be at most 15 bytes");
        return -1;
    }
    return 0;
}

/* --- leak_native_thread: "leaky-worker" threads parked for ever and
 * never joined.  Their handles are remembered only so that
 * release_leaked_threads() (test hygiene) can wake and join them. */

static pthread_mutex_t leaky_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t leaky_cond = PTHREAD_COND_INITIALIZER;
static unsigned long leaky_generation = 0;
static long leaky_alive = 0;
static pthread_t *leaky_threads = NULL;
static size_t leaky_len = 0, leaky_cap = 0;

static void *
leaky_body(void *arg)
{
    handshake_t *h = (handshake_t *)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* never steal a signal */

    pthread_mutex_lock(&leaky_lock);
    unsigned long gen = leaky_generation;
    leaky_alive++;
    pthread_mutex_unlock(&leaky_lock);

    handshake_signal(h);

    pthread_mutex_lock(&leaky_lock);
    while (leaky_generation == gen)
        pthread_cond_wait(&leaky_cond, &leaky_lock);
    leaky_alive--;
    pthread_mutex_unlock(&leaky_lock);
    return NULL;
}

static int
small_stack_attr(pthread_attr_t *attr)
{
    int rc = pthread_attr_init(attr);
    if (rc != 0)
        return rc;
    rc = pthread_attr_setstacksize(attr, 256 * KIB);
    if (rc != 0)
        pthread_attr_destroy(attr);
    return rc;
}

static PyObject *
leak_native_thread(PyObject *m, PyObject *a)
{
    handshake_t h;
    pthread_attr_t attr;
    pthread_t t;
    if (leaky_len == leaky_cap) {
        size_t ncap = leaky_cap ? leaky_cap * 2 : 16;
        pthread_t *n = realloc(leaky_threads, ncap * sizeof(pthread_t));
        if (n == NULL)
            return PyErr_NoMemory();
        leaky_threads = n;
        leaky_cap = ncap;
    }
    int rc = small_stack_attr(&attr);
    if (rc != 0)
        return oserror_from_code(rc);
    handshake_init(&h, "leaky-worker");
    rc = pthread_create(&t, &attr, leaky_body, &h);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        handshake_destroy(&h);
        return oserror_from_code(rc);
    }
    leaky_threads[leaky_len++] = t;
    handshake_wait(&h);
    pid_t tid = h.tid;
    handshake_destroy(&h);
    return PyLong_FromLong((long)tid);
}

static PyObject *
release_leaked_threads(PyObject *m, PyObject *a)
{
    pthread_t *threads = leaky_threads;
    size_t n = leaky_len;
    int rc = 0;
    /* claim the list while holding the GIL */
    leaky_threads = NULL;
    leaky_len = leaky_cap = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&leaky_lock);
    leaky_generation++;
    pthread_cond_broadcast(&leaky_cond);
    pthread_mutex_unlock(&leaky_lock);
    for (size_t i = 0; i < n; i++) {
        int r = pthread_join(threads[i], NULL);
        if (r != 0 && rc == 0)
            rc = r;
    }
    Py_END_ALLOW_THREADS
    free(threads);
    if (rc != 0)
        return oserror_from_code(rc);
    return PyLong_FromSize_t(n);
}

static PyObject *
leaked_thread_count(PyObject *m, PyObject *a)
{
    long n;
    pthread_mutex_lock(&leaky_lock);
    n = leaky_alive;
    pthread_mutex_unlock(&leaky_lock);
    return PyLong_FromLong(n);
}

/* --- clean_native_thread: a named thread that exits and is joined */

static void *
short_named_body(void *arg)
{
    handshake_t *h = (handshake_t *)arg;
    handshake_signal(h);
    return NULL;
}

static PyObject *
clean_native_thread(PyObject *m, PyObject *a)
{
    handshake_t h;
    pthread_attr_t attr;
    pthread_t t;
    int rc = small_stack_attr(&attr);
    if (rc != 0)
        return oserror_from_code(rc);
    handshake_init(&h, "clean-worker");
    rc = pthread_create(&t, &attr, short_named_body, &h);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        handshake_destroy(&h);
        return oserror_from_code(rc);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    handshake_destroy(&h);
    if (rc != 0)
        return oserror_from_code(rc);
    Py_RETURN_NONE;
}

/* ======================================================================
 * clean look-alikes
 * ====================================================================== */

#define CACHE_SLOTS 1000
/* volatile: never read back, the stores would be dropped, and the blocks lost */
static void *volatile bounded_cache[CACHE_SLOTS];
static size_t bounded_cache_used = 0;

/* one malloc(128) per call until 1000 slots are full; never freed */
static PyObject *
lookalike_bounded_cache(PyObject *m, PyObject *a)
{
    if (bounded_cache_used < CACHE_SLOTS) {
        void *p = malloc(128);
        if (p == NULL)
            return PyErr_NoMemory();
        memset(p, 9, 128);
        bounded_cache[bounded_cache_used++] = p;
    }
    return PyLong_FromSize_t(bounded_cache_used);
}

static void *lazy_global = NULL;

/* 64 KiB allocated on the first call only */
static PyObject *
lookalike_lazy_global(PyObject *m, PyObject *a)
{
    if (lazy_global == NULL) {
        lazy_global = malloc(64 * KIB);
        if (lazy_global == NULL)
            return PyErr_NoMemory();
        memset(lazy_global, 1, 64 * KIB);
    }
    ((volatile char *)lazy_global)[0]++;
    Py_RETURN_NONE;
}

static char *growing_buf = NULL;
static size_t growing_cap = 0;
#define GROWING_MAX (64 * KIB)
#define GROWING_STEP (4 * KIB)

/* a scratch buffer grown by realloc (4 KiB per call) up to 64 KiB, reused */
static PyObject *
lookalike_growing_buffer(PyObject *m, PyObject *a)
{
    if (growing_cap < GROWING_MAX) {
        size_t ncap = growing_cap + GROWING_STEP;
        char *n = realloc(growing_buf, ncap);
        if (n == NULL)
            return PyErr_NoMemory();
        growing_buf = n;
        growing_cap = ncap;
    }
    memset(growing_buf, 2, growing_cap);
    escape(growing_buf);
    return PyLong_FromSize_t(growing_cap);
}

/* 64 MiB allocated, every page touched, freed */
static PyObject *
lookalike_large_temp(PyObject *m, PyObject *a)
{
    size_t n = 64 * MIB;
    void *p = malloc(n);
    if (p == NULL)
        return PyErr_NoMemory();
    touch_pages(p, n);
    free(p);
    Py_RETURN_NONE;
}

/* mixed sizes, freed in a different order than allocated */
static PyObject *
lookalike_fragmentation(PyObject *m, PyObject *a)
{
    static const size_t sizes[] = {
        16, 4000, 24, 300000, 40, 100, 70000, 200, 8000, 500,
        1000, 33, 3000, 150000, 20000, 64, 130000, 2048, 48, 96,
    };
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    void *ptrs[N];
    for (size_t i = 0; i < N; i++) {
        ptrs[i] = malloc(sizes[i]);
        if (ptrs[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(ptrs[j]);
            return PyErr_NoMemory();
        }
        memset(ptrs[i], (int)i, sizes[i] < 256 ? sizes[i] : 256);
        escape(ptrs[i]);
    }
    /* odd indices first (forwards), then even ones backwards */
    for (size_t i = 1; i < N; i += 2)
        free(ptrs[i]);
    for (size_t i = N; i-- > 0;)
        if (i % 2 == 0)
            free(ptrs[i]);
    Py_RETURN_NONE;
}

/* a file, a pipe and a socket: opened and closed */
static PyObject *
lookalike_fd_roundtrip(PyObject *m, PyObject *a)
{
    int fds[2], fd, saved;
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
    if (close(fd) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (pipe2(fds, O_CLOEXEC) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (close(fds[0]) != 0) {
        saved = errno;
        close(fds[1]);
        return oserror_from_code(saved);
    }
    if (close(fds[1]) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (close(fd) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static void *
worker_sum_body(void *arg)
{
    unsigned long *acc = (unsigned long *)arg;
    unsigned long s = 0;
    for (unsigned long i = 0; i < 1000; i++)
        s += i * i;
    *acc = s;
    return NULL;
}

/* an unnamed worker thread created and joined */
static PyObject *
lookalike_thread_join(PyObject *m, PyObject *a)
{
    pthread_t t;
    unsigned long acc = 0;
    int rc = pthread_create(&t, NULL, worker_sum_body, &acc);
    if (rc != 0)
        return oserror_from_code(rc);
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return oserror_from_code(rc);
    return PyLong_FromUnsignedLong(acc);
}

/* ======================================================================
 * probe helpers
 * ====================================================================== */

static void *held_block = NULL;
static size_t held_block_size = 0;

static PyObject *
hold_malloc(PyObject *m, PyObject *args)
{
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n", &n))
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes must be > 0");
        return NULL;
    }
    void *p = malloc((size_t)n);
    if (p == NULL)
        return PyErr_NoMemory();
    memset(p, 0x5A, (size_t)n);
    escape(p);
    free(held_block); /* holds one block: replace the previous one */
    held_block = p;
    held_block_size = (size_t)n;
    Py_RETURN_NONE;
}

static PyObject *
release_malloc(PyObject *m, PyObject *a)
{
    size_t n = held_block_size;
    free(held_block);
    held_block = NULL;
    held_block_size = 0;
    return PyLong_FromSize_t(n);
}

static void **held_many = NULL;
static size_t held_many_count = 0;

static void
free_many(void)
{
    for (size_t i = 0; i < held_many_count; i++)
        free(held_many[i]);
    free(held_many);
    held_many = NULL;
    held_many_count = 0;
}

static PyObject *
hold_many(PyObject *m, PyObject *args)
{
    Py_ssize_t count, size;
    if (!PyArg_ParseTuple(args, "nn", &count, &size))
        return NULL;
    if (count < 0 || size <= 0) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 0 and size > 0");
        return NULL;
    }
    void **arr = calloc(count ? (size_t)count : 1, sizeof(void *));
    if (arr == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < count; i++) {
        arr[i] = malloc((size_t)size);
        if (arr[i] == NULL) {
            for (Py_ssize_t j = 0; j < i; j++)
                free(arr[j]);
            free(arr);
            return PyErr_NoMemory();
        }
        memset(arr[i], 0x5B, (size_t)size);
        escape(arr[i]);
    }
    free_many(); /* replaces any previous set */
    held_many = arr;
    held_many_count = (size_t)count;
    Py_RETURN_NONE;
}

static PyObject *
release_many(PyObject *m, PyObject *a)
{
    size_t n = held_many_count;
    free_many();
    return PyLong_FromSize_t(n);
}

static void *held_map = NULL;
static size_t held_map_size = 0;

static PyObject *
hold_mmap(PyObject *m, PyObject *args)
{
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n", &n))
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes must be > 0");
        return NULL;
    }
    void *p = mmap(NULL, (size_t)n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return PyErr_SetFromErrno(PyExc_OSError);
    touch_pages(p, (size_t)n);
    if (held_map != NULL && munmap(held_map, held_map_size) != 0) {
        int saved = errno;
        munmap(p, (size_t)n);
        return oserror_from_code(saved);
    }
    held_map = p;
    held_map_size = (size_t)n;
    Py_RETURN_NONE;
}

static PyObject *
release_mmap(PyObject *m, PyObject *a)
{
    size_t n = held_map_size;
    if (held_map != NULL && munmap(held_map, held_map_size) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    held_map = NULL;
    held_map_size = 0;
    return PyLong_FromSize_t(n);
}

/* start_named_thread(name) -> tid; stop_named_thread() joins it */
static pthread_mutex_t named_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t named_cond = PTHREAD_COND_INITIALIZER;
static int named_stop = 0;
static int named_running = 0;
static pthread_t named_thread;

static void *
named_body(void *arg)
{
    handshake_t *h = (handshake_t *)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    handshake_signal(h);
    pthread_mutex_lock(&named_lock);
    while (!named_stop)
        pthread_cond_wait(&named_cond, &named_lock);
    pthread_mutex_unlock(&named_lock);
    return NULL;
}

static PyObject *
start_named_thread(PyObject *m, PyObject *args)
{
    const char *name;
    handshake_t h;
    pthread_attr_t attr;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    if (check_thread_name(name) != 0)
        return NULL;
    if (named_running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a named thread is already running; "
                        "call stop_named_thread() first");
        return NULL;
    }
    int rc = small_stack_attr(&attr);
    if (rc != 0)
        return oserror_from_code(rc);
    handshake_init(&h, name);
    named_stop = 0; /* no thread is running: no lock needed */
    rc = pthread_create(&named_thread, &attr, named_body, &h);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        handshake_destroy(&h);
        return oserror_from_code(rc);
    }
    named_running = 1;
    handshake_wait(&h);
    pid_t tid = h.tid;
    rc = h.name_rc;
    handshake_destroy(&h);
    if (rc != 0) {
        /* the thread runs but has no name: still report the failure */
        return oserror_from_code(rc);
    }
    return PyLong_FromLong((long)tid);
}

static PyObject *
stop_named_thread(PyObject *m, PyObject *a)
{
    int rc;
    if (!named_running)
        Py_RETURN_FALSE;
    named_running = 0; /* claimed by this call (we hold the GIL) */
    pthread_t t = named_thread;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&named_lock);
    named_stop = 1;
    pthread_cond_broadcast(&named_cond);
    pthread_mutex_unlock(&named_lock);
    rc = pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return oserror_from_code(rc);
    Py_RETURN_TRUE;
}

/* ======================================================================
 * [matrix] issue 9 / issue 10 cases
 *
 * Leaks that process-wide counters misjudge (issue 9) and native leaks
 * whose allocating call a report must name (issue 10), each with a clean
 * twin or look-alike.  The catalogue entries live in tests/leakmatrix.py
 * (the "[matrix]" block there); the functions are registered with the
 * module through their own method table (matrix_methods), added in
 * PyInit__leakmatrix, so that this block merges independently of the
 * rest of the file.
 *
 * Every native leak allocates in a function of its own, named lm_site_*
 * (or lm_dl_alloc in the dlopen'ed library), declared noinline/noclone
 * and doing work after the allocation so that no optimisation removes its
 * frame: tests/leakmatrix.py records that name and file as the case's
 * expected allocation site.
 * ====================================================================== */

#define LM_SITE __attribute__((noinline, noclone, used))

/* --- allocation sites (one function per allocating call) */

LM_SITE void *
lm_site_malloc(size_t n)
{
    void *p = malloc(n);
    if (p != NULL)
        memset(p, 0x11, n);
    escape(p);
    return p;
}

LM_SITE void *
lm_site_calloc(size_t count, size_t size)
{
    unsigned char *p = calloc(count, size);
    if (p != NULL)
        p[0] = 1;
    escape(p);
    return p;
}

/* a fresh buffer grown twice by realloc: the surviving block is the one
 * the second realloc returned */
LM_SITE void *
lm_site_realloc(void)
{
    char *p = malloc(24);
    if (p == NULL)
        return NULL;
    memset(p, 1, 24);
    char *q = realloc(p, 96);
    if (q == NULL) {
        free(p);
        return NULL;
    }
    memset(q + 24, 2, 96 - 24);
    p = q;
    q = realloc(p, 320);
    if (q == NULL) {
        free(p);
        return NULL;
    }
    memset(q + 96, 3, 320 - 96);
    escape(q);
    return q;
}

LM_SITE void *
lm_site_posix_memalign(void)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, 192) != 0)
        return NULL;
    memset(p, 4, 192);
    escape(p);
    return p;
}

static const char lm_strdup_src[] =
    "psleak leakmatrix site strdup: the allocation is made inside libc";

/* strdup allocates inside libc: the caller's frame is this function */
LM_SITE char *
lm_site_strdup(void)
{
    char *p = strdup(lm_strdup_src);
    escape(p);
    return p;
}

/* An allocator table in data, as libxml2 keeps xmlMalloc and xmlFree (linked into
 * lxml): function pointers initialised to libc's, filled in by absolute relocations in
 * .data, not through the GOT. */
typedef void *(*lm_malloc_fn)(size_t);
typedef void (*lm_free_fn)(void *);
lm_malloc_fn lm_table_malloc = malloc;
lm_free_fn lm_table_free = free;

LM_SITE void *
lm_site_table_alloc(void)
{
    void *p = lm_table_malloc(56);
    if (p != NULL)
        memset(p, 6, 56);
    escape(p);
    return p;
}

/* opendir allocates the DIR (and its ~32 KiB buffer) inside libc */
LM_SITE DIR *
lm_site_opendir(void)
{
    DIR *d = opendir("/");
    escape(d);
    return d;
}

#define LM_SITE_MMAP_SIZE (8 * KIB)

LM_SITE void *
lm_site_mmap(void)
{
    void *p = mmap(NULL, LM_SITE_MMAP_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    touch_pages(p, LM_SITE_MMAP_SIZE);
    return p;
}

LM_SITE void *
lm_site_worker_alloc(void)
{
    void *p = malloc(80);
    if (p != NULL)
        memset(p, 5, 80);
    escape(p);
    return p;
}

LM_SITE void *
lm_site_thread_alloc(void)
{
    void *p = malloc(112);
    if (p != NULL)
        memset(p, 6, 112);
    escape(p);
    return p;
}

LM_SITE void *
lm_site_rare_alloc(void)
{
    void *p = malloc(64);
    if (p != NULL)
        memset(p, 7, 64);
    escape(p);
    return p;
}

/* the 16 B/call leak beside the native buffer cache */
LM_SITE void *
lm_site_churn_alloc(void)
{
    void *p = malloc(16);
    if (p != NULL)
        memset(p, 8, 16);
    escape(p);
    return p;
}

/* the copy a growing buffer is replaced with on every call */
LM_SITE void *
lm_site_grown_copy_alloc(size_t size)
{
    void *p = malloc(size);
    if (p != NULL)
        memset(p, 10, size);
    escape(p);
    return p;
}

/* the 16 B/call leak beside a Python list of buffers (issue 9) */
LM_SITE void *
lm_site_pylist_churn_alloc(void)
{
    void *p = malloc(16);
    if (p != NULL)
        memset(p, 9, 16);
    escape(p);
    return p;
}

/* the 16 B/call leak beside a reference cycle per call (issue 9) */
LM_SITE void *
lm_site_cycle_alloc(void)
{
    void *p = malloc(16);
    if (p != NULL)
        memset(p, 10, 16);
    escape(p);
    return p;
}

/* --- simple sites: allocate, then lose or free */

static PyObject *
site_result(void *p, int leak)
{
    if (p == NULL)
        return PyErr_NoMemory();
    if (!leak)
        free(p);
    Py_RETURN_NONE;
}

static PyObject *leak_site_malloc(PyObject *m, PyObject *a) { return site_result(lm_site_malloc(48), 1); }
static PyObject *clean_site_malloc(PyObject *m, PyObject *a) { return site_result(lm_site_malloc(48), 0); }
static PyObject *leak_site_calloc(PyObject *m, PyObject *a) { return site_result(lm_site_calloc(10, 24), 1); }
static PyObject *clean_site_calloc(PyObject *m, PyObject *a) { return site_result(lm_site_calloc(10, 24), 0); }
static PyObject *leak_site_realloc(PyObject *m, PyObject *a) { return site_result(lm_site_realloc(), 1); }
static PyObject *clean_site_realloc(PyObject *m, PyObject *a) { return site_result(lm_site_realloc(), 0); }
static PyObject *leak_site_posix_memalign(PyObject *m, PyObject *a) { return site_result(lm_site_posix_memalign(), 1); }
static PyObject *clean_site_posix_memalign(PyObject *m, PyObject *a) { return site_result(lm_site_posix_memalign(), 0); }
static PyObject *leak_site_table(PyObject *m, PyObject *a) { return site_result(lm_site_table_alloc(), 1); }
/* made through the table, freed through the table */
static PyObject *
clean_site_table(PyObject *m, PyObject *a)
{
    void *p = lm_site_table_alloc();
    if (p == NULL)
        return PyErr_NoMemory();
    lm_table_free(p);
    Py_RETURN_NONE;
}
static PyObject *leak_site_strdup(PyObject *m, PyObject *a) { return site_result(lm_site_strdup(), 1); }
static PyObject *clean_site_strdup(PyObject *m, PyObject *a) { return site_result(lm_site_strdup(), 0); }

/* The leak closes the directory's fd (so that only memory is lost, not a
 * descriptor) and drops the DIR; the twin calls closedir(). */
static PyObject *
site_opendir_impl(int leak)
{
    DIR *d = lm_site_opendir();
    if (d == NULL)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/");
    if (leak) {
        if (close(dirfd(d)) != 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        Py_RETURN_NONE;
    }
    if (closedir(d) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}
static PyObject *leak_site_opendir(PyObject *m, PyObject *a) { return site_opendir_impl(1); }
static PyObject *clean_site_opendir(PyObject *m, PyObject *a) { return site_opendir_impl(0); }

static PyObject *
site_mmap_impl(int leak)
{
    void *p = lm_site_mmap();
    if (p == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (!leak && munmap(p, LM_SITE_MMAP_SIZE) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}
static PyObject *leak_site_mmap(PyObject *m, PyObject *a) { return site_mmap_impl(1); }
static PyObject *clean_site_mmap(PyObject *m, PyObject *a) { return site_mmap_impl(0); }

/* --- a persistent worker thread, started by the first call and used by
 * every later one: the caller posts a request and waits (GIL released)
 * until the worker has run lm_site_worker_alloc() and lost or freed the
 * block.  The thread lives as long as the process (it is one thread, not
 * one per call, so it is not a thread leak). */

static pthread_mutex_t worker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t worker_cond = PTHREAD_COND_INITIALIZER;
static int worker_started = 0;
static unsigned long worker_posted = 0, worker_done = 0;
static int worker_leak = 0, worker_failed = 0;

static void *
worker_body(void *arg)
{
    handshake_t *h = (handshake_t *)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    handshake_signal(h);
    pthread_mutex_lock(&worker_lock);
    for (;;) {
        while (worker_done == worker_posted)
            pthread_cond_wait(&worker_cond, &worker_lock);
        int leak = worker_leak;
        pthread_mutex_unlock(&worker_lock);
        void *p = lm_site_worker_alloc();
        int failed = p == NULL;
        if (!leak)
            free(p);
        pthread_mutex_lock(&worker_lock);
        worker_failed = failed;
        worker_done = worker_posted;
        pthread_cond_broadcast(&worker_cond);
    }
    return NULL;
}

static int
ensure_worker(void)
{
    handshake_t h;
    pthread_attr_t attr;
    pthread_t t;
    if (worker_started)
        return 0;
    int rc = small_stack_attr(&attr);
    if (rc != 0)
        return rc;
    handshake_init(&h, "lm-site-worker");
    rc = pthread_create(&t, &attr, worker_body, &h);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        handshake_destroy(&h);
        return rc;
    }
    pthread_detach(t);
    handshake_wait(&h);
    handshake_destroy(&h);
    worker_started = 1;
    return 0;
}

static PyObject *
site_worker_impl(int leak)
{
    int rc = ensure_worker();
    if (rc != 0)
        return oserror_from_code(rc);
    int failed;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&worker_lock);
    worker_leak = leak;
    unsigned long ticket = ++worker_posted;
    pthread_cond_broadcast(&worker_cond);
    while (worker_done < ticket)
        pthread_cond_wait(&worker_cond, &worker_lock);
    failed = worker_failed;
    pthread_mutex_unlock(&worker_lock);
    Py_END_ALLOW_THREADS
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
static PyObject *leak_site_worker(PyObject *m, PyObject *a) { return site_worker_impl(1); }
static PyObject *clean_site_worker(PyObject *m, PyObject *a) { return site_worker_impl(0); }

/* --- a short-lived thread per call, created and joined */

static void *
site_thread_body(void *arg)
{
    int leak = (int)(intptr_t)arg;
    void *p = lm_site_thread_alloc();
    if (p == NULL)
        return (void *)(intptr_t)ENOMEM;
    if (!leak)
        free(p);
    return NULL;
}

static PyObject *
site_thread_impl(int leak)
{
    pthread_t t;
    void *ret = NULL;
    pthread_attr_t attr;
    int rc = small_stack_attr(&attr);
    if (rc != 0)
        return oserror_from_code(rc);
    rc = pthread_create(&t, &attr, site_thread_body, (void *)(intptr_t)leak);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return oserror_from_code(rc);
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_join(t, &ret);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return oserror_from_code(rc);
    if (ret != NULL)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
static PyObject *leak_site_thread(PyObject *m, PyObject *a) { return site_thread_impl(1); }
static PyObject *clean_site_thread(PyObject *m, PyObject *a) { return site_thread_impl(0); }

/* --- a leak inside a shared library loaded with dlopen() by the first
 * call (tests/ext/leakmatrix_dl.c, built by build_ext.py next to this
 * extension).  unload_dl_library() (test hygiene, called by
 * leakmatrix.cleanup()) dlcloses it, so that the next check loads it
 * again while it runs. */

#define DL_LIBRARY_NAME "libleakmatrix_dl.so"

static void *dl_handle = NULL;
static void *(*dl_alloc)(size_t) = NULL;
static void (*dl_release)(void *) = NULL;

/* dlopen the library that sits in the directory of this extension: its handle and
 * functions, or -1 with an exception set */
static int
open_dl_library(void **handle, void *(**alloc)(size_t), void (**release)(void *))
{
    Dl_info info;
    char path[4096];
    if (dladdr((void *)&open_dl_library, &info) == 0 || info.dli_fname == NULL) {
        PyErr_SetString(PyExc_OSError, "dladdr() cannot locate the _leakmatrix extension");
        return -1;
    }
    const char *slash = strrchr(info.dli_fname, '/');
    int dirlen = slash == NULL ? 1 : (int)(slash - info.dli_fname);
    const char *dir = slash == NULL ? "." : info.dli_fname;
    int n = snprintf(path, sizeof(path), "%.*s/%s", dirlen, dir, DL_LIBRARY_NAME);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        PyErr_SetString(PyExc_OSError, "path of " DL_LIBRARY_NAME " too long");
        return -1;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *err = dlerror();
        PyErr_Format(PyExc_OSError, "dlopen(%s) failed: %s (run tests/build_ext.py)",
                     path, err ? err : "unknown error");
        return -1;
    }
    void *a = dlsym(h, "lm_dl_alloc");
    void *r = dlsym(h, "lm_dl_release");
    if (a == NULL || r == NULL) {
        dlclose(h);
        PyErr_Format(PyExc_OSError, "%s lacks lm_dl_alloc / lm_dl_release", path);
        return -1;
    }
    /* dlsym returns void *; POSIX guarantees it converts to a function pointer */
    memcpy(alloc, &a, sizeof(a));
    memcpy(release, &r, sizeof(r));
    *handle = h;
    return 0;
}

static int
load_dl_library(void)
{
    return dl_handle != NULL ? 0 : open_dl_library(&dl_handle, &dl_alloc, &dl_release);
}

static PyObject *
site_dlopen_impl(int leak)
{
    if (load_dl_library() != 0)
        return NULL;
    void *p = dl_alloc(144);
    if (p == NULL)
        return PyErr_NoMemory();
    if (!leak)
        dl_release(p);
    Py_RETURN_NONE;
}
static PyObject *leak_site_dlopen(PyObject *m, PyObject *a) { return site_dlopen_impl(1); }
static PyObject *clean_site_dlopen(PyObject *m, PyObject *a) { return site_dlopen_impl(0); }

/* --- the same library opened and closed again by every call (a plugin, a codec): it is
 * unmapped by the time the report names the frames, unless leak_site_dlopen still holds
 * it (then dlclose only drops a reference) */
static PyObject *
site_dlclose_impl(int leak)
{
    void *h;
    void *(*alloc)(size_t);
    void (*release)(void *);
    if (open_dl_library(&h, &alloc, &release) != 0)
        return NULL;
    void *p = alloc(144);
    if (p != NULL && !leak)
        release(p);
    dlclose(h);
    if (p == NULL)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
static PyObject *leak_site_dlclose(PyObject *m, PyObject *a) { return site_dlclose_impl(1); }
static PyObject *clean_site_dlclose(PyObject *m, PyObject *a) { return site_dlclose_impl(0); }

static PyObject *
unload_dl_library(PyObject *m, PyObject *a)
{
    if (dl_handle == NULL)
        Py_RETURN_FALSE;
    void *h = dl_handle;
    dl_handle = NULL;
    dl_alloc = NULL;
    dl_release = NULL;
    if (dlclose(h) != 0) {
        const char *err = dlerror();
        PyErr_Format(PyExc_OSError, "dlclose failed: %s", err ? err : "unknown error");
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
dl_library_loaded(PyObject *m, PyObject *a)
{
    return PyBool_FromLong(dl_handle != NULL);
}

/* --- rare: 64 B on every 100th call */

static unsigned long rare_calls[2] = {0, 0};

static PyObject *
site_rare_impl(int leak)
{
    if (++rare_calls[leak] % 100 != 0)
        Py_RETURN_NONE;
    return site_result(lm_site_rare_alloc(), leak);
}
static PyObject *leak_site_rare(PyObject *m, PyObject *a) { return site_rare_impl(1); }
static PyObject *clean_site_rare(PyObject *m, PyObject *a) { return site_rare_impl(0); }

/* --- 16 B/call beside a native cache of 1000-byte buffers, flushed
 * (all freed) every 500 calls: the heap rises by ~500 KB and drops back
 * every 500 calls, and the leak hides in those swings. */

#define NATIVE_CACHE_SLOTS 500
#define NATIVE_CACHE_BUFFER 1000

typedef struct {
    void *slot[NATIVE_CACHE_SLOTS];
    size_t used;
} native_cache_t;

static native_cache_t native_caches[2];

static void
native_cache_flush(native_cache_t *c)
{
    for (size_t i = 0; i < c->used; i++)
        free(c->slot[i]);
    c->used = 0;
}

static PyObject *
site_churn_impl(int leak)
{
    native_cache_t *c = &native_caches[leak];
    void *buf = malloc(NATIVE_CACHE_BUFFER);
    if (buf == NULL)
        return PyErr_NoMemory();
    memset(buf, 0x2C, NATIVE_CACHE_BUFFER);
    c->slot[c->used++] = buf;
    if (c->used == NATIVE_CACHE_SLOTS)
        native_cache_flush(c);
    return site_result(lm_site_churn_alloc(), leak);
}
static PyObject *leak_site_churn(PyObject *m, PyObject *a) { return site_churn_impl(1); }
static PyObject *clean_site_churn(PyObject *m, PyObject *a) { return site_churn_impl(0); }

/* --- one buffer, replaced on every call by a copy: 32 B larger (the leak: a
 * string concatenated to on every call, a vector grown by copying), or of the
 * same 4 KiB (the twin). Only one block is ever alive, and each call frees the
 * block the call before it made: no run's blocks outlive the next run. */

#define GROWN_COPY_STEP 32
#define GROWN_COPY_FIXED (4 * KIB)

static char *grown_copy[2] = {NULL, NULL};
static size_t grown_copy_len[2] = {0, 0};

static PyObject *
site_grown_copy_impl(int leak)
{
    size_t len = leak ? grown_copy_len[leak] + GROWN_COPY_STEP : GROWN_COPY_FIXED;
    char *n = lm_site_grown_copy_alloc(len);
    if (n == NULL)
        return PyErr_NoMemory();
    if (grown_copy[leak] != NULL)
        memcpy(n, grown_copy[leak], grown_copy_len[leak] < len ? grown_copy_len[leak] : len);
    free(grown_copy[leak]);
    grown_copy[leak] = n;
    grown_copy_len[leak] = len;
    return PyLong_FromSize_t(len);
}
static PyObject *leak_site_grown_copy(PyObject *m, PyObject *a) { return site_grown_copy_impl(1); }
static PyObject *clean_site_grown_copy(PyObject *m, PyObject *a) { return site_grown_copy_impl(0); }

/* --- issue 9: 16 B/call beside a Python list of 1000-byte bytes objects,
 * cleared every 500 calls (Python-level churn: the buffers go through the
 * object allocator, then malloc, since they exceed pymalloc's 512 B). */

static PyObject *pylist_churn[2] = {NULL, NULL};

static PyObject *
pylist_churn_impl(int leak)
{
    if (pylist_churn[leak] == NULL) {
        pylist_churn[leak] = PyList_New(0);
        if (pylist_churn[leak] == NULL)
            return NULL;
    }
    PyObject *list = pylist_churn[leak];
    PyObject *b = PyBytes_FromStringAndSize(NULL, 1000);
    if (b == NULL)
        return NULL;
    memset(PyBytes_AS_STRING(b), 'c', 1000);
    int rc = PyList_Append(list, b);
    Py_DECREF(b);
    if (rc != 0)
        return NULL;
    if (PyList_GET_SIZE(list) >= 500 && PyList_SetSlice(list, 0, PyList_GET_SIZE(list), NULL) != 0)
        return NULL;
    return site_result(lm_site_pylist_churn_alloc(), leak);
}
static PyObject *leak_churn_pylist(PyObject *m, PyObject *a) { return pylist_churn_impl(1); }
static PyObject *clean_churn_pylist(PyObject *m, PyObject *a) { return pylist_churn_impl(0); }

/* --- issue 9: 16 B/call beside a ~2 KB reference cycle per call
 * ([bytes(2000), <the list itself>]), which only the cyclic garbage
 * collector frees.  Run with Checkers.exclude("gcgarbage"): the cycle is
 * collectable garbage, not a fault; the malloc(16) is the leak. */

static PyObject *
cycle_impl(int leak)
{
    PyObject *list = PyList_New(2);
    if (list == NULL)
        return NULL;
    PyObject *b = PyBytes_FromStringAndSize(NULL, 2000);
    if (b == NULL) {
        Py_DECREF(list);
        return NULL;
    }
    memset(PyBytes_AS_STRING(b), 'y', 2000);
    PyList_SET_ITEM(list, 0, b);
    Py_INCREF(list);
    PyList_SET_ITEM(list, 1, list); /* the cycle */
    Py_DECREF(list);                /* now only the cycle holds it */
    return site_result(lm_site_cycle_alloc(), leak);
}
static PyObject *leak_cycle_malloc(PyObject *m, PyObject *a) { return cycle_impl(1); }
static PyObject *clean_cycle_malloc(PyObject *m, PyObject *a) { return cycle_impl(0); }

/* --- issue 9: a private arena.  64 B per call are bump-allocated from
 * 1 MiB chunks obtained with mmap (16384 calls per chunk): no malloc, and
 * no new mapping for 16k calls, so only RSS grows, one page every 64
 * calls.  The twin resets the arena after every call (the same page is
 * reused). */

#define ARENA_CHUNK MIB
#define ARENA_OBJECT 64

typedef struct {
    unsigned char *chunk;
    size_t used;
} arena_t;

static arena_t arenas[2];

static void *
arena_alloc(arena_t *a, size_t n)
{
    if (a->chunk == NULL || a->used + n > ARENA_CHUNK) {
        /* a full chunk is abandoned (leak) */
        void *c = mmap(NULL, ARENA_CHUNK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c == MAP_FAILED)
            return NULL;
        a->chunk = c;
        a->used = 0;
    }
    void *p = a->chunk + a->used;
    a->used += n;
    return p;
}

static PyObject *
arena_impl(int leak)
{
    arena_t *a = &arenas[leak];
    void *p = arena_alloc(a, ARENA_OBJECT);
    if (p == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    memset(p, 0x3A, ARENA_OBJECT);
    escape(p);
    if (!leak)
        a->used = 0; /* arena reset: everything allocated from it is dead */
    Py_RETURN_NONE;
}
static PyObject *leak_private_arena(PyObject *m, PyObject *a) { return arena_impl(1); }
static PyObject *clean_private_arena(PyObject *m, PyObject *a) { return arena_impl(0); }

/* --- issue 9: an fd leaked on every 50th call (the 1st, 51st, ...), run
 * with Checkers.only("fds"); the twin opens and closes on the same calls */

static unsigned long fd_every_calls[2] = {0, 0};

static PyObject *
fd_every_50th_impl(int leak)
{
    if (fd_every_calls[leak]++ % 50 != 0)
        Py_RETURN_NONE;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
    PyObject *r = finish_fds(&fd, 1, leak);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}
static PyObject *leak_fd_every_50th(PyObject *m, PyObject *a) { return fd_every_50th_impl(1); }
static PyObject *clean_fd_every_50th(PyObject *m, PyObject *a) { return fd_every_50th_impl(0); }

/* --- issue 9 look-alike: a bounded cache of 150 entries of 250 KiB
 * (37.5 MiB when full, under the 64 MiB default budget).  One entry per
 * call, every page touched; once full, the oldest entry is evicted and
 * replaced. */

#define BIG_CACHE_SLOTS 150
#define BIG_CACHE_ENTRY (250 * KIB)

static void *big_cache[BIG_CACHE_SLOTS];
static size_t big_cache_next = 0;

static PyObject *
lookalike_bounded_cache_large(PyObject *m, PyObject *a)
{
    void *p = malloc(BIG_CACHE_ENTRY);
    if (p == NULL)
        return PyErr_NoMemory();
    memset(p, 0x4B, BIG_CACHE_ENTRY);
    size_t slot = big_cache_next++ % BIG_CACHE_SLOTS;
    free(big_cache[slot]); /* evict the oldest (NULL while filling) */
    big_cache[slot] = p;
    return PyLong_FromSize_t(big_cache_next < BIG_CACHE_SLOTS ? big_cache_next : BIG_CACHE_SLOTS);
}

/* --- issue 9 look-alike: a bounded amortised buffer.  1 KiB is appended
 * per call; the capacity doubles (realloc) from 4 KiB up to 4 MiB; when
 * the buffer is full it is reused from the start.  It grows for the
 * first 4096 calls, then never again. */

#define AMORTISED_STEP KIB
#define AMORTISED_MAX (4 * MIB)

static char *amortised_buf = NULL;
static size_t amortised_len = 0, amortised_cap = 0;

static PyObject *
lookalike_amortised_buffer(PyObject *m, PyObject *a)
{
    if (amortised_len + AMORTISED_STEP > AMORTISED_MAX)
        amortised_len = 0; /* full: reuse from the start */
    if (amortised_len + AMORTISED_STEP > amortised_cap) {
        size_t ncap = amortised_cap ? amortised_cap * 2 : 4 * KIB;
        char *n = realloc(amortised_buf, ncap);
        if (n == NULL)
            return PyErr_NoMemory();
        amortised_buf = n;
        amortised_cap = ncap;
    }
    memset(amortised_buf + amortised_len, 0x5C, AMORTISED_STEP);
    amortised_len += AMORTISED_STEP;
    escape(amortised_buf);
    return PyLong_FromSize_t(amortised_cap);
}

#define LM_NOARGS(name, doc) {#name, (PyCFunction)name, METH_NOARGS, doc}

static PyMethodDef matrix_methods[] = {
    LM_NOARGS(leak_site_malloc, "lm_site_malloc(48): malloc, lost."),
    LM_NOARGS(clean_site_malloc, "lm_site_malloc(48): malloc, freed."),
    LM_NOARGS(leak_site_calloc, "lm_site_calloc(10, 24): calloc, lost."),
    LM_NOARGS(clean_site_calloc, "lm_site_calloc(10, 24): calloc, freed."),
    LM_NOARGS(leak_site_realloc, "lm_site_realloc(): a buffer grown by realloc to 320 B, lost."),
    LM_NOARGS(clean_site_realloc, "lm_site_realloc(): a buffer grown by realloc to 320 B, freed."),
    LM_NOARGS(leak_site_posix_memalign, "lm_site_posix_memalign(): posix_memalign(64, 192), lost."),
    LM_NOARGS(clean_site_posix_memalign, "lm_site_posix_memalign(): posix_memalign(64, 192), freed."),
    LM_NOARGS(leak_site_table, "lm_site_table_alloc(): malloc(56) through a function pointer kept in data, lost."),
    LM_NOARGS(clean_site_table, "lm_site_table_alloc(): malloc(56) through a function pointer kept in data, freed through its twin."),
    LM_NOARGS(leak_site_strdup, "lm_site_strdup(): strdup (allocated inside libc), lost."),
    LM_NOARGS(clean_site_strdup, "lm_site_strdup(): strdup (allocated inside libc), freed."),
    LM_NOARGS(leak_site_opendir, "lm_site_opendir(): opendir('/') (allocated inside libc); fd closed, DIR lost."),
    LM_NOARGS(clean_site_opendir, "lm_site_opendir(): opendir('/'), closedir."),
    LM_NOARGS(leak_site_mmap, "lm_site_mmap(): 8 KiB anonymous mmap, touched, never unmapped."),
    LM_NOARGS(clean_site_mmap, "lm_site_mmap(): 8 KiB anonymous mmap, touched, unmapped."),
    LM_NOARGS(leak_site_worker, "a persistent worker thread runs lm_site_worker_alloc() (malloc 80), lost."),
    LM_NOARGS(clean_site_worker, "a persistent worker thread runs lm_site_worker_alloc() (malloc 80), freed."),
    LM_NOARGS(leak_site_thread, "a joined thread per call runs lm_site_thread_alloc() (malloc 112), lost."),
    LM_NOARGS(clean_site_thread, "a joined thread per call runs lm_site_thread_alloc() (malloc 112), freed."),
    LM_NOARGS(leak_site_dlopen, "lm_dl_alloc(144) in " DL_LIBRARY_NAME " (dlopen'ed by the first call), lost."),
    LM_NOARGS(clean_site_dlopen, "lm_dl_alloc(144) in " DL_LIBRARY_NAME ", released by lm_dl_release."),
    LM_NOARGS(leak_site_dlclose, "lm_dl_alloc(144) in " DL_LIBRARY_NAME ", opened and closed by each call, lost."),
    LM_NOARGS(clean_site_dlclose, "lm_dl_alloc(144) in " DL_LIBRARY_NAME ", opened and closed by each call, released."),
    LM_NOARGS(unload_dl_library, "dlclose " DL_LIBRARY_NAME " if loaded (test hygiene); return whether it was."),
    LM_NOARGS(dl_library_loaded, "Whether " DL_LIBRARY_NAME " is loaded by this extension."),
    LM_NOARGS(leak_site_rare, "lm_site_rare_alloc(): malloc(64) lost on every 100th call."),
    LM_NOARGS(clean_site_rare, "lm_site_rare_alloc(): malloc(64) freed on every 100th call."),
    LM_NOARGS(leak_site_churn, "lm_site_churn_alloc() (malloc 16) lost, beside 1000-byte buffers freed every 500 calls."),
    LM_NOARGS(clean_site_churn, "lm_site_churn_alloc() (malloc 16) freed, beside 1000-byte buffers freed every 500 calls."),
    LM_NOARGS(leak_churn_pylist, "malloc(16) lost, beside a list of bytes(1000) cleared every 500 calls."),
    LM_NOARGS(clean_churn_pylist, "malloc(16) freed, beside a list of bytes(1000) cleared every 500 calls."),
    LM_NOARGS(leak_cycle_malloc, "malloc(16) lost, beside a ~2 KB reference cycle per call."),
    LM_NOARGS(clean_cycle_malloc, "malloc(16) freed, beside a ~2 KB reference cycle per call."),
    LM_NOARGS(leak_private_arena, "64 B bump-allocated from 1 MiB mmap'ed chunks, never reset."),
    LM_NOARGS(clean_private_arena, "64 B bump-allocated from a 1 MiB mmap'ed chunk, arena reset after the call."),
    LM_NOARGS(leak_fd_every_50th, "open('/dev/null') never closed, on every 50th call (the 1st, 51st, ...)."),
    LM_NOARGS(clean_fd_every_50th, "open('/dev/null') and close, on every 50th call."),
    LM_NOARGS(lookalike_bounded_cache_large, "A 150-entry cache of 250 KiB blocks (touched), oldest evicted when full."),
    LM_NOARGS(leak_site_grown_copy, "One buffer replaced by a copy 32 B larger on every call."),
    LM_NOARGS(clean_site_grown_copy, "One 4 KiB buffer replaced by a copy of the same size on every call."),
    LM_NOARGS(lookalike_amortised_buffer, "1 KiB appended per call to a buffer doubling up to 4 MiB, then reused."),
    {NULL, NULL, 0, NULL},
};

/* [matrix] end of the issue 9 / issue 10 block */

/* ======================================================================
 * references taken and never given back (refcount census, RefcountLeakError)
 *
 * Py_INCREF on a long-lived object without the matching Py_DECREF grows no
 * memory: only the object's count rises, one per call. numpy 1.24.0's
 * ndarray.fill(v) on an object array did this to v (fixed in 1.24.1).
 * ====================================================================== */

/* A long-lived object of the module (its attribute `refleak_global`), for the leaks
 * that take no argument. */
static PyObject *refleak_global = NULL;

static PyObject *
leak_incref_arg(PyObject *m, PyObject *obj)
{
    Py_INCREF(obj); /* kept for ever: nothing gives it back */
    Py_RETURN_NONE;
}

static PyObject *
clean_incref_arg(PyObject *m, PyObject *obj)
{
    Py_INCREF(obj);
    Py_DECREF(obj);
    Py_RETURN_NONE;
}

static unsigned long refleak_rare_calls = 0;

static PyObject *
leak_incref_arg_rare(PyObject *m, PyObject *obj)
{
    Py_INCREF(obj);
    if (++refleak_rare_calls % 10 != 0)
        Py_DECREF(obj); /* one call in ten keeps its reference */
    Py_RETURN_NONE;
}

static PyObject *
clean_incref_arg_rare(PyObject *m, PyObject *obj)
{
    Py_INCREF(obj);
    ++refleak_rare_calls;
    Py_DECREF(obj);
    Py_RETURN_NONE;
}

static PyObject *
leak_incref_global(PyObject *m, PyObject *unused)
{
    Py_INCREF(refleak_global);
    Py_RETURN_NONE;
}

static PyObject *
clean_incref_global(PyObject *m, PyObject *unused)
{
    Py_INCREF(refleak_global);
    Py_DECREF(refleak_global);
    Py_RETURN_NONE;
}

static unsigned long refleak_global_calls = 0;

/* one call in 200 keeps a reference to the module-level object: 2 over 400 calls */
static PyObject *
leak_incref_global_rare(PyObject *m, PyObject *unused)
{
    if (++refleak_global_calls % 200 == 0)
        Py_INCREF(refleak_global);
    Py_RETURN_NONE;
}

static PyObject *
clean_incref_global_rare(PyObject *m, PyObject *unused)
{
    if (++refleak_global_calls % 200 == 0) {
        Py_INCREF(refleak_global);
        Py_DECREF(refleak_global);
    }
    Py_RETURN_NONE;
}

#if PY_VERSION_HEX < 0x030C0000
static unsigned long refleak_none_calls = 0;

/* one call in 50 keeps a reference to None (a count that moves by a few on its own) */
static PyObject *
leak_incref_none_rare(PyObject *m, PyObject *unused)
{
    if (++refleak_none_calls % 50 == 0)
        Py_INCREF(Py_None);
    Py_RETURN_NONE;
}

static PyObject *
clean_incref_none_rare(PyObject *m, PyObject *unused)
{
    if (++refleak_none_calls % 50 == 0) {
        Py_INCREF(Py_None);
        Py_DECREF(Py_None);
    }
    Py_RETURN_NONE;
}
#endif

/* A bounded cache of references: the last 256 arguments, in a ring. The count of an
 * argument passed on every call rises by 256, then stays: not a leak. */
#define REFLEAK_RING 256
static PyObject *refleak_ring[REFLEAK_RING];
static size_t refleak_ring_next = 0;

static PyObject *
lookalike_ref_ring(PyObject *m, PyObject *obj)
{
    PyObject *old = refleak_ring[refleak_ring_next];
    Py_INCREF(obj);
    refleak_ring[refleak_ring_next] = obj;
    refleak_ring_next = (refleak_ring_next + 1) % REFLEAK_RING;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* A heap type whose tp_dealloc forgets Py_DECREF(Py_TYPE(self)) (the classic bug of a
 * static type turned into a heap type: since CPython 3.8, instances of a heap type own a
 * reference to it, taken by tp_alloc). Each instance freed keeps one reference to the
 * type; no memory grows. Its twin gives the reference back. */
static PyObject *refleak_leaky_type = NULL;
static PyObject *refleak_clean_type = NULL;

static void
refleak_leaky_dealloc(PyObject *self)
{
    Py_TYPE(self)->tp_free(self); /* the type's reference is never given back */
}

static void
refleak_clean_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot refleak_leaky_slots[] = {{Py_tp_dealloc, refleak_leaky_dealloc}, {0, NULL}};
static PyType_Slot refleak_clean_slots[] = {{Py_tp_dealloc, refleak_clean_dealloc}, {0, NULL}};
static PyType_Spec refleak_leaky_spec = {
    "_leakmatrix.LeakyDealloc", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, refleak_leaky_slots};
static PyType_Spec refleak_clean_spec = {
    "_leakmatrix.CleanDealloc", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT, refleak_clean_slots};

static PyObject *
heaptype_instance(PyObject *type)
{
    PyObject *obj = PyType_GenericAlloc((PyTypeObject *)type, 0);
    if (obj == NULL)
        return NULL;
    Py_DECREF(obj); /* freed at once, by the type's tp_dealloc */
    Py_RETURN_NONE;
}

static PyObject *leak_heaptype_dealloc(PyObject *m, PyObject *unused) { return heaptype_instance(refleak_leaky_type); }
static PyObject *clean_heaptype_dealloc(PyObject *m, PyObject *unused) { return heaptype_instance(refleak_clean_type); }

static PyMethodDef refleak_methods[] = {
    {"leak_incref_arg", (PyCFunction)leak_incref_arg, METH_O, "leak_incref_arg(obj): Py_INCREF(obj), never given back."},
    {"clean_incref_arg", (PyCFunction)clean_incref_arg, METH_O, "clean_incref_arg(obj): Py_INCREF(obj), Py_DECREF(obj)."},
    {"leak_incref_arg_rare", (PyCFunction)leak_incref_arg_rare, METH_O, "leak_incref_arg_rare(obj): one call in ten keeps a reference to obj."},
    {"clean_incref_arg_rare", (PyCFunction)clean_incref_arg_rare, METH_O, "clean_incref_arg_rare(obj): every reference given back."},
    {"leak_incref_global", (PyCFunction)leak_incref_global, METH_NOARGS, "Py_INCREF of a module-level object, never given back."},
    {"clean_incref_global", (PyCFunction)clean_incref_global, METH_NOARGS, "Py_INCREF + Py_DECREF of a module-level object."},
    {"leak_incref_global_rare", (PyCFunction)leak_incref_global_rare, METH_NOARGS, "One call in 200 keeps a reference to a module-level object."},
    {"clean_incref_global_rare", (PyCFunction)clean_incref_global_rare, METH_NOARGS, "One call in 200 takes and gives back a reference to a module-level object."},
#if PY_VERSION_HEX < 0x030C0000 /* None is immortal since 3.12: nothing to leak */
    {"leak_incref_none_rare", (PyCFunction)leak_incref_none_rare, METH_NOARGS, "One call in 50 keeps a reference to None."},
    {"clean_incref_none_rare", (PyCFunction)clean_incref_none_rare, METH_NOARGS, "One call in 50 takes and gives back a reference to None."},
#endif
    {"leak_heaptype_dealloc", (PyCFunction)leak_heaptype_dealloc, METH_NOARGS, "Make and free an instance of a heap type whose tp_dealloc keeps the type's reference."},
    {"clean_heaptype_dealloc", (PyCFunction)clean_heaptype_dealloc, METH_NOARGS, "Make and free an instance of a heap type whose tp_dealloc gives it back."},
    {"lookalike_ref_ring", (PyCFunction)lookalike_ref_ring, METH_O, "lookalike_ref_ring(obj): keep the last 256 arguments (a bounded cache of references)."},
    {NULL, NULL, 0, NULL},
};

/* end of the refleak block */

/* ======================================================================
 * module
 * ====================================================================== */

#define NOARGS(name, doc) {#name, (PyCFunction)name, METH_NOARGS, doc}
#define VARARGS(name, doc) {#name, (PyCFunction)name, METH_VARARGS, doc}

static PyMethodDef leakmatrix_methods[] = {
    NOARGS(leak_malloc_small, "malloc(16), lost."),
    NOARGS(clean_malloc_small, "malloc(16), freed."),
    NOARGS(leak_malloc_tiny, "malloc(8), lost."),
    NOARGS(clean_malloc_tiny, "malloc(8), freed."),
    NOARGS(leak_malloc_page, "malloc(4096), lost."),
    NOARGS(clean_malloc_page, "malloc(4096), freed."),
    NOARGS(leak_malloc_huge, "malloc(256 KiB) (above the mmap threshold), memset, lost."),
    NOARGS(clean_malloc_huge, "malloc(256 KiB), memset, freed."),
    NOARGS(leak_calloc, "calloc(32, 8), lost."),
    NOARGS(clean_calloc, "calloc(32, 8), freed."),
    NOARGS(leak_realloc, "malloc(16) grown by realloc to 512, lost."),
    NOARGS(clean_realloc, "malloc(16) grown by realloc to 512, freed."),
    NOARGS(leak_strdup, "strdup of a 70-char string, lost."),
    NOARGS(clean_strdup, "strdup of a 70-char string, freed."),
    NOARGS(leak_posix_memalign, "posix_memalign(64, 256), lost."),
    NOARGS(clean_posix_memalign, "posix_memalign(64, 256), freed."),
    NOARGS(leak_mmap, "64 KiB anonymous mmap, touched, never unmapped."),
    NOARGS(clean_mmap, "64 KiB anonymous mmap, touched, unmapped."),
    NOARGS(leak_mmap_large, "1 MiB anonymous mmap, touched, never unmapped."),
    NOARGS(clean_mmap_large, "1 MiB anonymous mmap, touched, unmapped."),
    NOARGS(leak_appended, "8 B appended per call to a buffer realloc grows by an eighth when full."),
    NOARGS(clean_appended, "The same, started again from the front once 64 KiB are used."),
    NOARGS(leak_rare, "malloc(200) lost on one call in 500."),
    NOARGS(clean_rare, "malloc(200) freed, on one call in 500."),
    NOARGS(leak_intermittent, "malloc(64) lost on one call in ten."),
    NOARGS(clean_intermittent, "malloc(64) freed on one call in ten."),
    NOARGS(leak_after_fill, "a 75 KB cache filled by the first 150 calls; malloc(32) lost on every 3rd call."),
    NOARGS(clean_after_fill, "a 75 KB cache filled by the first 150 calls; malloc(32) freed on every 3rd call."),
    NOARGS(leak_thread_malloc, "a joined worker thread mallocs 1 KiB and loses it."),
    NOARGS(clean_thread_malloc, "a joined worker thread mallocs 1 KiB and frees it."),
    NOARGS(leak_pymem_malloc, "PyMem_Malloc(64), lost."),
    NOARGS(clean_pymem_malloc, "PyMem_Malloc(64), freed."),
    NOARGS(leak_pyobject_malloc, "PyObject_Malloc(64), lost."),
    NOARGS(clean_pyobject_malloc, "PyObject_Malloc(64), freed."),
    NOARGS(leak_missing_decref_bytes, "a 100-byte bytes object never DECREF'd."),
    NOARGS(clean_missing_decref_bytes, "a 100-byte bytes object, DECREF'd."),
    NOARGS(leak_missing_decref_list, "a list of 10 ints never DECREF'd."),
    NOARGS(clean_missing_decref_list, "a list of 10 ints, DECREF'd."),
    NOARGS(leak_missing_decref_long, "a big int (10**60) never DECREF'd."),
    NOARGS(clean_missing_decref_long, "a big int (10**60), DECREF'd."),
    NOARGS(leak_extra_incref, "return a new 100-byte bytes with one extra INCREF."),
    NOARGS(clean_extra_incref, "return a new 100-byte bytes."),
    VARARGS(leak_buffer, "leak_buffer(obj=None): PyObject_GetBuffer(obj or bytearray(1024)) never released."),
    VARARGS(clean_buffer, "clean_buffer(obj=None): PyObject_GetBuffer + PyBuffer_Release."),
    VARARGS(leak_fd_open, "leak_fd_open(path=None) -> fd: open /dev/null (or create/open path), never closed."),
    VARARGS(clean_fd_open, "clean_fd_open(path=None): open and close."),
    NOARGS(leak_fd_pipe, "pipe2() -> (r, w), never closed."),
    NOARGS(clean_fd_pipe, "pipe2(), both ends closed."),
    NOARGS(leak_fd_tcp_socket, "TCP socket -> fd, never closed."),
    NOARGS(clean_fd_tcp_socket, "TCP socket, closed."),
    NOARGS(leak_fd_udp_socket, "UDP socket -> fd, never closed."),
    NOARGS(clean_fd_udp_socket, "UDP socket, closed."),
    NOARGS(leak_fd_socketpair, "AF_UNIX socketpair -> (a, b), never closed."),
    NOARGS(clean_fd_socketpair, "AF_UNIX socketpair, closed."),
    NOARGS(leak_fd_eventfd, "eventfd -> fd, never closed."),
    NOARGS(clean_fd_eventfd, "eventfd, closed."),
    NOARGS(leak_fd_memfd, "memfd_create -> fd, never closed."),
    NOARGS(clean_fd_memfd, "memfd_create, closed."),
    NOARGS(leak_fd_epoll, "epoll_create1 -> fd, never closed."),
    NOARGS(clean_fd_epoll, "epoll_create1, closed."),
    NOARGS(leak_fd_timerfd, "timerfd_create -> fd, never closed."),
    NOARGS(clean_fd_timerfd, "timerfd_create, closed."),
    NOARGS(leak_fd_signalfd, "signalfd (SIGUSR2, not blocked) -> fd, never closed."),
    NOARGS(clean_fd_signalfd, "signalfd, closed."),
    NOARGS(leak_fd_inotify, "inotify_init1 -> fd, never closed."),
    NOARGS(clean_fd_inotify, "inotify_init1, closed."),
    VARARGS(leak_fd_dup, "leak_fd_dup(fd=<module /dev/null fd>) -> new fd, never closed."),
    VARARGS(clean_fd_dup, "clean_fd_dup(fd=<module /dev/null fd>): dup and close."),
    NOARGS(close_leaked_fds, "Close every fd the leak_fd_* functions leaked; return how many."),
    NOARGS(leak_native_thread, "Start a thread named 'leaky-worker' that blocks for ever and is never joined; return its tid."),
    NOARGS(clean_native_thread, "Start a thread named 'clean-worker' that exits; join it."),
    NOARGS(release_leaked_threads, "Wake and join every 'leaky-worker' (test hygiene); return how many."),
    NOARGS(leaked_thread_count, "Number of 'leaky-worker' threads alive."),
    NOARGS(lookalike_bounded_cache, "One malloc(128) per call into a 1000-slot static cache until full."),
    NOARGS(lookalike_lazy_global, "malloc(64 KiB) on the first call only."),
    NOARGS(lookalike_growing_buffer, "Scratch buffer grown by realloc up to 64 KiB and reused."),
    NOARGS(lookalike_large_temp, "malloc(64 MiB), touch every page, free."),
    NOARGS(lookalike_fragmentation, "Mixed-size allocations freed in a different order."),
    NOARGS(lookalike_fd_roundtrip, "Open+close a file, a pipe and a socket."),
    NOARGS(lookalike_thread_join, "Create and join an unnamed worker thread."),
    VARARGS(hold_malloc, "hold_malloc(nbytes): malloc+memset one block, replacing the held one."),
    NOARGS(release_malloc, "Free the block held by hold_malloc(); return its size."),
    VARARGS(hold_many, "hold_many(count, size): hold count touched blocks of size bytes."),
    NOARGS(release_many, "Free the blocks held by hold_many(); return their count."),
    VARARGS(hold_mmap, "hold_mmap(nbytes): anonymous mmap with every page touched, replacing the held one."),
    NOARGS(release_mmap, "munmap the hold_mmap() region; return its size."),
    VARARGS(start_named_thread, "start_named_thread(name) -> tid: start a named thread parked until stop_named_thread()."),
    NOARGS(stop_named_thread, "Stop and join the start_named_thread() thread; return False if none was running."),
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef leakmatrix_module = {
    PyModuleDef_HEAD_INIT,
    "_leakmatrix",
    "Deliberate leaks, their clean twins and probe helpers for psleak's tests.",
    -1,
    leakmatrix_methods,
};

PyMODINIT_FUNC
PyInit__leakmatrix(void)
{
    if (dup_source_fd < 0) {
        dup_source_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (dup_source_fd < 0)
            return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "/dev/null");
    }
    PyObject *module = PyModule_Create(&leakmatrix_module);
    if (module == NULL)
        return NULL;
    /* [matrix] the issue 9 / issue 10 cases have their own method table */
    if (PyModule_AddFunctions(module, matrix_methods) != 0) {
        Py_DECREF(module);
        return NULL;
    }
    /* the refleak cases too, and their module-level victim */
    if (refleak_global == NULL) {
        refleak_global = PyUnicode_FromString("psleak-leakmatrix: a long-lived module object");
        if (refleak_global == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    Py_INCREF(refleak_global);
    if (PyModule_AddFunctions(module, refleak_methods) != 0
        || PyModule_AddObject(module, "refleak_global", refleak_global) < 0) {
        Py_DECREF(refleak_global);
        Py_DECREF(module);
        return NULL;
    }
    if (refleak_leaky_type == NULL) {
        refleak_leaky_type = PyType_FromSpec(&refleak_leaky_spec);
        refleak_clean_type = PyType_FromSpec(&refleak_clean_spec);
        if (refleak_leaky_type == NULL || refleak_clean_type == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    /* module attributes: each holds its own reference (the statics keep theirs) */
    Py_INCREF(refleak_leaky_type);
    if (PyModule_AddObject(module, "LeakyDealloc", refleak_leaky_type) < 0) {
        Py_DECREF(refleak_leaky_type);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(refleak_clean_type);
    if (PyModule_AddObject(module, "CleanDealloc", refleak_clean_type) < 0) {
        Py_DECREF(refleak_clean_type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
