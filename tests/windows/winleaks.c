/* Windows leaks and their clean twins, built with mingw into winleaks.dll before the tests
 * run (a process under Wine cannot start the host's compiler) and loaded by the core
 * crate's tests and by tests/windows/leakcheck-crate. Each leak_* is meant to be caught by
 * psleak; each clean_* twin to pass. */
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#define EXPORT __declspec(dllexport)

/* The compiler may drop an allocation nobody reads; storing it here keeps it. */
void *volatile winleaks_sink;

EXPORT void leak_heapalloc(void) {
    char *p = HeapAlloc(GetProcessHeap(), 0, 100);
    if (p) p[0] = 1;
    winleaks_sink = p; /* never HeapFree'd */
}

EXPORT void clean_heapalloc(void) {
    char *p = HeapAlloc(GetProcessHeap(), 0, 100);
    if (p) p[0] = 1;
    winleaks_sink = p;
    HeapFree(GetProcessHeap(), 0, p);
}

EXPORT void leak_malloc(void) {
    char *p = malloc(100);
    if (p) p[0] = 1;
    winleaks_sink = p; /* never freed */
}

EXPORT void clean_malloc(void) {
    char *p = malloc(100);
    if (p) p[0] = 1;
    winleaks_sink = p;
    free(p);
}

EXPORT void leak_virtualalloc(void) {
    char *p = VirtualAlloc(NULL, 64 * 1024, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (p) memset(p, 1, 64 * 1024); /* never VirtualFree'd */
    winleaks_sink = p;
}

EXPORT void clean_virtualalloc(void) {
    char *p = VirtualAlloc(NULL, 64 * 1024, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (p) memset(p, 1, 64 * 1024);
    winleaks_sink = p;
    if (p) VirtualFree(p, 0, MEM_RELEASE);
}

EXPORT void leak_heapcreate(void) {
    HANDLE h = HeapCreate(0, 0, 0); /* never HeapDestroy'ed */
    if (h) HeapFree(h, 0, HeapAlloc(h, 0, 16));
}

EXPORT void clean_heapcreate(void) {
    HANDLE h = HeapCreate(0, 0, 0);
    if (h) {
        HeapFree(h, 0, HeapAlloc(h, 0, 16));
        HeapDestroy(h);
    }
}

EXPORT void leak_handle(void) {
    winleaks_sink = CreateEventW(NULL, TRUE, FALSE, NULL); /* never CloseHandle'd */
}

EXPORT void clean_handle(void) {
    HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (h) CloseHandle(h);
}

/* Set by release_threads(): the leaked threads wait on it, so a test can end them. */
static HANDLE winleaks_stop;

static DWORD WINAPI wait_for_stop(LPVOID arg) {
    (void)arg;
    WaitForSingleObject(winleaks_stop, INFINITE);
    return 0;
}

static DWORD WINAPI return_at_once(LPVOID arg) {
    (void)arg;
    return 0;
}

EXPORT void leak_thread(void) {
    if (!winleaks_stop) winleaks_stop = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE t = CreateThread(NULL, 0, wait_for_stop, NULL, 0, NULL);
    if (t) CloseHandle(t); /* the thread runs on: a thread leak, not a handle leak */
}

EXPORT void clean_thread(void) {
    HANDLE t = CreateThread(NULL, 0, return_at_once, NULL, 0, NULL);
    if (t) {
        WaitForSingleObject(t, INFINITE);
        CloseHandle(t);
    }
}

/* Ends the threads of leak_thread (the stop event itself stays: made once, on purpose). */
EXPORT void release_threads(void) {
    if (winleaks_stop) SetEvent(winleaks_stop);
}
