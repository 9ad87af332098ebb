/*
 * Test-only stand-in for Windows' bcryptprimitives.dll, for Wine 8.
 *
 * Rust's standard library (and the getrandom crate) draw random bytes from
 * ProcessPrng in bcryptprimitives.dll, which every supported Windows has
 * (Windows 10 and later). Wine 8, Debian bookworm's, has no such DLL, so a
 * Rust program does not even start there. This DLL exports ProcessPrng over
 * BCryptGenRandom with the system-preferred generator, which Wine has.
 *
 * scripts/windows builds it with mingw and puts it into the Wine prefix the
 * tests use. It is never shipped: a real Windows machine has the real DLL.
 */
#include <windows.h>
#include <bcrypt.h>

/* Fills data with len cryptographically random bytes; FALSE on failure. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
