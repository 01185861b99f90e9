/* An extension that lets its answers be cached (HSE_IO_CACHE_RESPONSE with
 * HSE_REQ_VECTOR_SEND): repeats of a URL are answered by the server
 * without calling it again. It counts its calls, so a cached answer shows
 * the count of the call that made it. A URL with "nocache" in it asks
 * for no caching (and, as in HTTP.SYS, a URL with a query is never
 * cached). */
#include <stdio.h>
#include <string.h>

#include "httpext.h"

static volatile long calls;

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strcpy(pVer->lpszExtensionDesc, "cached answers");
    return TRUE;
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb)
{
    char body[128];
    HSE_VECTOR_ELEMENT element;
    HSE_RESPONSE_VECTOR vector;
    long n = __sync_add_and_fetch(&calls, 1);

    snprintf(body, sizeof body, "call %ld for %s\n", n, ecb->lpszPathInfo);
    element.ElementType = HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER;
    element.pvContext = body;
    element.cbOffset = 0;
    element.cbSize = strlen(body);
    vector.dwFlags = HSE_IO_SYNC | HSE_IO_SEND_HEADERS | HSE_IO_FINAL_SEND;
    if (strstr(ecb->lpszPathInfo, "nocache") == NULL)
        vector.dwFlags |= HSE_IO_CACHE_RESPONSE;
    vector.pszStatus = "200 OK";
    vector.pszHeaders = "Content-Type: text/plain\r\n\r\n";
    vector.nElementCount = 1;
    vector.lpElementArray = &element;
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_VECTOR_SEND, &vector, NULL, NULL))
        return HSE_STATUS_ERROR;
    return HSE_STATUS_SUCCESS_AND_KEEP_CONN;
}
