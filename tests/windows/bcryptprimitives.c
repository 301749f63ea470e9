/* Wine 8.0 lacks bcryptprimitives.dll, whose ProcessPrng Rust std (1.78+) imports: a stand-in
 * for the test prefix, forwarding to RtlGenRandom (advapi32 SystemFunction036). */
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID, ULONG);
BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {
    while (n) {
        ULONG k = n > 0x10000000 ? 0x10000000 : (ULONG)n;
        if (!SystemFunction036(p, k)) return FALSE;
        p += k;
        n -= k;
    }
    return TRUE;
}
