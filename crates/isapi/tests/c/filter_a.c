/* A high-priority filter: rewrites /legacy/ URLs, answers /blocked.htm
 * itself, fails requests carrying X-Break, marks the request and the
 * response, and counts requests in its per-request context. */
#include <stdio.h>
#include <string.h>

#include "httpfilt.h"

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "filter A");
    pVer->dwFlags = SF_NOTIFY_ORDER_HIGH | SF_NOTIFY_SECURE_PORT | SF_NOTIFY_NONSECURE_PORT |
                    SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_SEND_RESPONSE |
                    SF_NOTIFY_END_OF_REQUEST;
    return TRUE;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    char value[512];
    DWORD size = sizeof value;
    if (type == SF_NOTIFY_PREPROC_HEADERS) {
        HTTP_FILTER_PREPROC_HEADERS *h = data;
        /* The context lives across the request's notifications. */
        pfc->pFilterContext = pfc->AllocMem(pfc, 16, 0);
        strcpy(pfc->pFilterContext, "seen");
        if (h->GetHeader(pfc, "X-Break:", value, &size))
            return SF_STATUS_REQ_ERROR;
        size = sizeof value;
        if (!h->GetHeader(pfc, "url", value, &size))
            return SF_STATUS_REQ_ERROR;
        if (strcmp(value, "/blocked.htm") == 0) {
            const char *body = "blocked by filter A\n";
            DWORD n = (DWORD)strlen(body);
            pfc->ServerSupportFunction(pfc, SF_REQ_SEND_RESPONSE_HEADER, "403 Forbidden",
                                       (ULONG_PTR) "Content-Type: text/plain\r\n\r\n", 0);
            pfc->WriteClient(pfc, (LPVOID)body, &n, 0);
            return SF_STATUS_REQ_FINISHED;
        }
        if (strncmp(value, "/legacy/", 8) == 0) {
            char rewritten[512];
            snprintf(rewritten, sizeof rewritten, "/%s", value + 8);
            h->SetHeader(pfc, "url", rewritten);
        }
        h->AddHeader(pfc, "X-Filter-Chain:", "A");
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    }
    if (type == SF_NOTIFY_SEND_RESPONSE) {
        HTTP_FILTER_SEND_RESPONSE *r = data;
        if (pfc->pFilterContext == NULL || strcmp(pfc->pFilterContext, "seen") != 0)
            return SF_STATUS_REQ_ERROR;
        r->SetHeader(pfc, "X-Filtered:", "A");
        pfc->AddResponseHeaders(pfc, "X-Added-By-A: yes\r\n", 0);
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    }
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
