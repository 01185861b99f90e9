/* A low-priority filter, loaded before filter A but notified after it:
 * it appends to what A wrote, and turns 404 answers into 410. */
#include <stdio.h>
#include <string.h>

#include "httpfilt.h"

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "filter B");
    pVer->dwFlags = SF_NOTIFY_ORDER_LOW | SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_SEND_RESPONSE;
    return TRUE;
}

static void append(HTTP_FILTER_PREPROC_HEADERS *h, HTTP_FILTER_CONTEXT *pfc, char *name)
{
    char value[256];
    char joined[300];
    DWORD size = sizeof value;
    if (!h->GetHeader(pfc, name, value, &size))
        strcpy(value, "(none)");
    snprintf(joined, sizeof joined, "%s,B", value);
    h->SetHeader(pfc, name, joined);
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    if (type == SF_NOTIFY_PREPROC_HEADERS)
        append(data, pfc, "X-Filter-Chain:");
    if (type == SF_NOTIFY_SEND_RESPONSE) {
        HTTP_FILTER_SEND_RESPONSE *r = data;
        append(r, pfc, "X-Filtered:");
        if (r->HttpStatus == 404)
            r->HttpStatus = 410;
    }
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
