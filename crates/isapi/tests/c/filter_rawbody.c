/* A raw-data filter of IIS 5 isolation mode: it rewrites what clients
 * send before the server parses it, turning every "apple" into "APPLE"
 * in place (the length stays, so a Content-Length still holds). */
#include <string.h>

#include "httpfilt.h"

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "raw body rewriter");
    pVer->dwFlags = SF_NOTIFY_READ_RAW_DATA | SF_NOTIFY_ORDER_LOW;
    return TRUE;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    HTTP_FILTER_RAW_DATA *raw = data;
    char *bytes = raw->pvInData;
    DWORD i;
    (void)pfc;
    if (type != SF_NOTIFY_READ_RAW_DATA)
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    for (i = 0; i + 5 <= raw->cbInData; i++)
        if (memcmp(bytes + i, "apple", 5) == 0)
            memcpy(bytes + i, "APPLE", 5);
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
