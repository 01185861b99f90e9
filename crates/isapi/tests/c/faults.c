/* A badly behaved extension, for the isolation tests: by its query it
 * crashes (a write through NULL: SIGSEGV), aborts, hangs, or reports its worker unhealthy; otherwise
 * it says which process it runs in and how often it has been called
 * since it was loaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpext.h"

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strcpy(pVer->lpszExtensionDesc, "faults");
    return TRUE;
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb)
{
    char text[64];
    DWORD n;
    if (strcmp(ecb->lpszQueryString, "crash") == 0) {
        /* A write through NULL, as a real bug makes it. */
        volatile int *nowhere = NULL;
        *nowhere = 1;
    }
    if (strcmp(ecb->lpszQueryString, "abort") == 0)
        abort();
    if (strcmp(ecb->lpszQueryString, "hang") == 0)
        for (;;)
            sleep(1);
    if (strcmp(ecb->lpszQueryString, "unhealthy") == 0)
        ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_REPORT_UNHEALTHY, "the database is gone",
                                   NULL, NULL);
    /* Kept while the module stays loaded (CacheISAPI). */
    static int calls;
    calls++;
    n = (DWORD)snprintf(text, sizeof text, "pid %d calls %d\n", (int)getpid(), calls);
    ecb->WriteClient(ecb->ConnID, text, &n, HSE_IO_SYNC);
    return HSE_STATUS_SUCCESS;
}
