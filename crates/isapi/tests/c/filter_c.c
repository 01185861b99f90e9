/* The other notifications: URL_MAP sends /mapped/ to the files of /real/,
 * AUTHENTICATION turns the user "guest" into alice, AUTH_COMPLETE marks
 * the request, ACCESS_DENIED counts denials into a header added on denial,
 * and LOG hides a secret path from the log and notes a response's sizes. */
#include <stdio.h>
#include <string.h>

#include "httpfilt.h"

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "filter C");
    pVer->dwFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_URL_MAP | SF_NOTIFY_AUTHENTICATION |
                    SF_NOTIFY_AUTH_COMPLETE | SF_NOTIFY_ACCESS_DENIED | SF_NOTIFY_LOG;
    return TRUE;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    static char target[64] = "/hidden";
    static char params[64] = "filtered=1";
    switch (type) {
    case SF_NOTIFY_PREPROC_HEADERS:
        pfc->ServerSupportFunction(pfc, SF_REQ_ADD_HEADERS_ON_DENIAL,
                                   "X-Denied-By: filter C\r\n", 0, 0);
        break;
    case SF_NOTIFY_URL_MAP: {
        HTTP_FILTER_URL_MAP *map = data;
        char *at = strstr(map->pszPhysicalPath, "/mapped/");
        if (at != NULL)
            memcpy(at, "/real/  ", 8), memmove(at + 6, at + 8, strlen(at + 8) + 1);
        break;
    }
    case SF_NOTIFY_AUTHENTICATION: {
        HTTP_FILTER_AUTHENT *auth = data;
        if (strcmp(auth->pszUser, "guest") == 0) {
            snprintf(auth->pszUser, auth->cbUserBuff, "alice");
            snprintf(auth->pszPassword, auth->cbPasswordBuff, "s3cret");
        }
        break;
    }
    case SF_NOTIFY_AUTH_COMPLETE: {
        HTTP_FILTER_AUTH_COMPLETE_INFO *info = data;
        info->SetHeader(pfc, "X-Auth-Complete:", "yes");
        break;
    }
    case SF_NOTIFY_ACCESS_DENIED: {
        HTTP_FILTER_ACCESS_DENIED *denied = data;
        if (strstr(denied->pszURL, "/answer-denial/") != NULL) {
            const char *body = "the filter explains the denial\n";
            DWORD n = (DWORD)strlen(body);
            pfc->ServerSupportFunction(pfc, SF_REQ_SEND_RESPONSE_HEADER, "401 Unauthorized",
                                       (ULONG_PTR) "Content-Type: text/plain\r\n\r\n", 0);
            pfc->WriteClient(pfc, (LPVOID)body, &n, 0);
            return SF_STATUS_REQ_FINISHED;
        }
        break;
    }
    case SF_NOTIFY_LOG: {
        HTTP_FILTER_LOG *log = data;
        static char sizes[96];
        if (strstr(log->pszTarget, "secret") != NULL) {
            log->pszTarget = target;
            log->pszParameters = params;
        }
        /* LOG comes once the response is sent: its sizes and time. */
        if (strstr(log->pszTarget, "sizes") != NULL) {
            snprintf(sizes, sizeof sizes, "sent=%u&recvd=%u&ms=%u", (unsigned)log->dwBytesSent,
                     (unsigned)log->dwBytesRecvd, (unsigned)log->msTimeForProcessing);
            log->pszParameters = sizes;
        }
        break;
    }
    }
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
