/* Leaks and their clean twins, called from the Rust integration tests through dlopen.
 * Each leaking function is meant to be caught by psleak; each clean twin to pass. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The compiler may drop an allocation nobody reads; storing it here keeps it. */
void *volatile leaks_sink;

void leak_malloc(void) {
    char *p = malloc(100); /* LEAK_MALLOC */
    if (p) p[0] = 1;
    leaks_sink = p; /* overwritten by the next call: never freed */
}

void clean_malloc(void) {
    char *p = malloc(100);
    if (p) p[0] = 1;
    leaks_sink = p;
    free(p);
}

void leak_mmap(void) {
    char *p = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) memset(p, 1, 64 * 1024); /* never unmapped */
    leaks_sink = p;
}

void clean_mmap(void) {
    char *p = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        memset(p, 1, 64 * 1024);
        munmap(p, 64 * 1024);
    }
}

/* Returns the read end, so that the test can close both ends afterwards: -1 on error. */
int leak_pipe(void) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    return fds[0];
}

void clean_pipe(void) {
    int fds[2];
    if (pipe(fds) == 0) {
        close(fds[0]);
        close(fds[1]);
    }
}

static int block_fds[2] = {-1, -1};

static void *blocked(void *arg) {
    char c;
    (void)arg;
    /* Blocks until the test writes to the pipe or closes it. */
    if (read(block_fds[0], &c, 1) < 0) return NULL;
    return NULL;
}

static void *quick(void *arg) {
    return arg;
}

/* Starts a thread named "leaky-worker" that blocks and is never joined. */
int leak_thread(void) {
    pthread_t t;
    if (block_fds[0] < 0 && pipe(block_fds) != 0) return -1;
    if (pthread_create(&t, NULL, blocked, NULL) != 0) return -1;
    pthread_setname_np(t, "leaky-worker");
    pthread_detach(t);
    return 0;
}

/* Lets every thread started by leak_thread finish. */
void release_threads(void) {
    if (block_fds[1] >= 0) {
        close(block_fds[1]);
        block_fds[1] = -1;
    }
}

void clean_thread(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, quick, NULL) == 0) {
        pthread_setname_np(t, "tidy-worker");
        pthread_join(t, NULL);
    }
}

/* Starts a joinable thread that ends at once and is never joined: its stack stays mapped
 * until join_ended_threads(), which the test calls afterwards. Past the table's end the
 * thread is detached instead (nothing is left then). */
static pthread_t ended[16384];
static size_t n_ended;

void leak_thread_unjoined(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, quick, NULL) != 0) return;
    if (n_ended < sizeof ended / sizeof ended[0])
        ended[n_ended++] = t;
    else
        pthread_detach(t);
}

void clean_thread_detached(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, quick, NULL) == 0) pthread_detach(t);
}

void join_ended_threads(void) {
    while (n_ended > 0) pthread_join(ended[--n_ended], NULL);
}

/* --- allocation sites (tests/ffi_track.rs): each allocating call carries a marker */
#include <dirent.h>

void leak_strdup(void) {
    leaks_sink = strdup("allocated inside libc for its caller"); /* LEAK_STRDUP */
}

void leak_mmap_site(void) {
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* LEAK_MMAP */
    if (p != MAP_FAILED) p[0] = 1;
    leaks_sink = p;
}

static unsigned long rare_calls;

/* 64 B on every 100th call. */
void leak_rare(void) {
    if (++rare_calls % 100 == 0) {
        char *p = malloc(64); /* LEAK_RARE */
        if (p) p[0] = 1;
        leaks_sink = p;
    }
}

void clean_rare(void) {
    if (++rare_calls % 100 == 0) {
        char *p = malloc(64);
        if (p) p[0] = 1;
        leaks_sink = p;
        free(p);
    }
}

/* A cache of 1000-byte buffers flushed every 500 calls, beside (or without) 16 B/call. */
static void *cache[500];
static unsigned cache_len;

static void churn(void) {
    if (cache_len == 500) {
        for (unsigned i = 0; i < cache_len; i++) free(cache[i]);
        cache_len = 0;
    }
    cache[cache_len++] = malloc(1000);
}

void leak_beside_churn(void) {
    churn();
    char *p = malloc(16); /* LEAK_CHURN */
    if (p) p[0] = 1;
    leaks_sink = p;
}

void clean_churn(void) {
    churn();
}

/* A persistent worker thread, started on the first call, allocates for every call. */
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static int work_pending, work_started;

static void *worker_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&work_lock);
    for (;;) {
        while (!work_pending) pthread_cond_wait(&work_cond, &work_lock);
        char *p = malloc(80); /* LEAK_WORKER */
        if (p) p[0] = 1;
        leaks_sink = p;
        work_pending = 0;
        pthread_cond_broadcast(&work_cond);
    }
    return NULL;
}

void leak_in_worker(void) {
    pthread_mutex_lock(&work_lock);
    if (!work_started) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, NULL) == 0) {
            pthread_setname_np(t, "leaks-worker");
            pthread_detach(t);
            work_started = 1;
        }
    }
    work_pending = 1;
    pthread_cond_broadcast(&work_cond);
    while (work_started && work_pending) pthread_cond_wait(&work_cond, &work_lock);
    pthread_mutex_unlock(&work_lock);
}

static void *short_main(void *arg) {
    (void)arg;
    char *p = malloc(112); /* LEAK_SHORT_THREAD */
    if (p) p[0] = 1;
    return p;
}

/* A thread per call that allocates and exits; the block is dropped. */
void leak_in_short_thread(void) {
    pthread_t t;
    void *p = NULL;
    if (pthread_create(&t, NULL, short_main, NULL) == 0) pthread_join(t, &p);
    leaks_sink = p;
}

/* A buffer grown by realloc on every call, never shrunk: 64 B a call. Each call's realloc
 * makes the block anew, so no block outlives the next call, but the heap grows. */
static char *grown;
static size_t grown_len;
void leak_realloc_grown(void) {
    char *p = realloc(grown, grown_len + 64); /* LEAK_REALLOC_GROWN */
    if (p == NULL) return;
    memset(p + grown_len, 1, 64);
    grown = p;
    grown_len += 64;
}

/* The same, 8 B a call, amortised as a growable array is (capacity grown by an eighth
 * when full): a block made before the check, resized now and then, never anew. */
static char *appended;
static size_t appended_len, appended_cap;
void leak_realloc_appended(void) {
    if (appended_len + 8 > appended_cap) {
        size_t cap = appended_cap + appended_cap / 8 + 64;
        char *p = realloc(appended, cap); /* LEAK_REALLOC_APPENDED */
        if (p == NULL) return;
        appended = p;
        appended_cap = cap;
    }
    memset(appended + appended_len, 2, 8);
    appended_len += 8;
}

/* The twin: grown up to 8 KiB, then freed and started again. */
static char *cycled;
static size_t cycled_len;
void clean_realloc_cycled(void) {
    if (cycled_len >= 8192) {
        free(cycled);
        cycled = NULL;
        cycled_len = 0;
    }
    char *p = realloc(cycled, cycled_len + 64);
    if (p == NULL) return;
    memset(p + cycled_len, 1, 64);
    cycled = p;
    cycled_len += 64;
}

/* An allocator table in data, as libxml2 keeps xmlMalloc and xmlFree (linked into lxml):
   function pointers initialised to the C library's, filled in by absolute relocations
   (R_X86_64_64), not through the GOT. */
typedef void *(*table_malloc_fn)(size_t);
typedef void (*table_free_fn)(void *);
table_malloc_fn table_malloc = malloc;
table_free_fn table_free = free;

void leak_through_table(void) {
    leaks_sink = table_malloc(48); /* LEAK_THROUGH_TABLE */
}

/* Made through the GOT, freed through the table, and the other way round. */
void clean_mixed_table(void) {
    void *p = malloc(64);
    leaks_sink = p;
    table_free(p);
    p = table_malloc(80);
    leaks_sink = p;
    free(p);
}

/* The program's own allocator, set in the table (xmlMemSetup): never patched, never
   changed back. */
static void *own_malloc(size_t n) { return malloc(n); }
void table_use_own(void) { table_malloc = own_malloc; }
void table_use_libc(void) { table_malloc = malloc; }
size_t table_malloc_address(void) { return (size_t)table_malloc; }
size_t own_malloc_address(void) { return (size_t)own_malloc; }

/* malloc called through the address dlsym gave (as ctypes and cffi's ABI mode call it):
   no GOT entry or data word to rewrite, so tracking does not see it. */
#include <dlfcn.h>
/* dlopen by a bare name: found through this library's DT_RUNPATH when built with one
 * (tests/ffi_track.rs). NULL when not found. */
void *open_bare(const char *name) {
    void *handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    /* not a tail call: dlopen must see this library as its caller */
    __asm__ __volatile__("" : : "g"(handle) : "memory");
    return handle;
}

void leak_through_dlsym(void) {
    static void *(*found)(size_t);
    if (found == NULL)
        found = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "malloc");
    leaks_sink = found(64);
}
