/* A filter that asks for raw data: refused in worker process isolation
 * mode. */
#include <string.h>

#include "httpfilt.h"

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "raw");
    pVer->dwFlags = SF_NOTIFY_READ_RAW_DATA | SF_NOTIFY_PREPROC_HEADERS;
    return TRUE;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    (void)pfc;
    (void)type;
    (void)data;
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
