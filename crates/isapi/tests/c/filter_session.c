/* A filter that keeps state per connection, as IIS lets filters do:
 * pFilterContext (memory from AllocMem) counts the requests of the
 * connection, and SF_NOTIFY_END_OF_NET_SESSION counts the connections
 * that ended. Both go out as response headers. */
#include <stdio.h>
#include <string.h>

#include "httpfilt.h"

static volatile long ended;

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "per-connection state");
    pVer->dwFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_END_OF_NET_SESSION;
    return TRUE;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    unsigned *requests = pfc->pFilterContext;
    char lines[128];
    (void)data;
    if (type == SF_NOTIFY_END_OF_NET_SESSION) {
        __sync_fetch_and_add(&ended, 1);
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    }
    if (requests == NULL) {
        requests = pfc->AllocMem(pfc, sizeof *requests, 0);
        *requests = 0;
        pfc->pFilterContext = requests;
    }
    *requests += 1;
    snprintf(lines, sizeof lines, "X-Request-On-Connection: %u\r\nX-Sessions-Ended: %ld\r\n",
             *requests, __sync_fetch_and_add(&ended, 0));
    pfc->AddResponseHeaders(pfc, lines, 0);
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
