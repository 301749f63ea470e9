/*
 * libleakmatrix_dl.so: a small shared library that the _leakmatrix
 * extension loads with dlopen() while a check runs (leak_site_dlopen /
 * clean_site_dlopen).  A leak whose allocating call sits in a library
 * loaded after a tracker installed its hooks must still be seen and
 * named: lm_dl_alloc in leakmatrix_dl.c.  Built with -g by
 * tests/build_ext.py; it does not depend on Python.
 */

#include <stdlib.h>
#include <string.h>

/* noinline/noclone: the allocating frame must keep this name */
__attribute__((noinline, noclone)) void *
lm_dl_alloc(size_t n)
{
    void *p = malloc(n);
    if (p != NULL)
        memset(p, 0x6D, n);
    __asm__ __volatile__("" : : "g"(p) : "memory");
    return p;
}

void
lm_dl_release(void *p)
{
    free(p);
}
