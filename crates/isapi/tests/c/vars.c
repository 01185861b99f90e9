/* Prints the server variables its query names (comma-separated), one per
 * line as NAME=value, or NAME: error N when GetServerVariable fails. */
#include <stdio.h>
#include <string.h>

#include "httpext.h"

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strcpy(pVer->lpszExtensionDesc, "server variables");
    return TRUE;
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb)
{
    char names[1024];
    char *name;
    char *rest;
    strncpy(names, ecb->lpszQueryString, sizeof names - 1);
    names[sizeof names - 1] = '\0';
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, "200 OK", NULL,
                               (LPDWORD) "Content-Type: text/plain\r\n\r\n");
    for (name = strtok_r(names, ",", &rest); name != NULL; name = strtok_r(NULL, ",", &rest)) {
        char value[8192];
        char line[8400];
        DWORD size = sizeof value;
        DWORD n;
        if (ecb->GetServerVariable(ecb->ConnID, name, value, &size))
            n = (DWORD)snprintf(line, sizeof line, "%s=%s\n", name, value);
        else
            n = (DWORD)snprintf(line, sizeof line, "%s: error %u\n", name,
                                (unsigned)GetLastError());
        if (n >= sizeof line)
            n = sizeof line - 1;
        ecb->WriteClient(ecb->ConnID, line, &n, HSE_IO_SYNC);
    }
    return HSE_STATUS_SUCCESS;
}
