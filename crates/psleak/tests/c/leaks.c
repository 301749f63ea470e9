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
    char *p = malloc(100);
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
