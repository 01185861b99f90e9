/* A filter that sees what goes out (SF_NOTIFY_SEND_RAW_DATA) in worker
 * process isolation mode: it adds a field to each response head, growing
 * it in place (within cbInBuffer), and masks every "secret" in bodies. */
#include <string.h>

#include "httpfilt.h"

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "send raw data");
    pVer->dwFlags = SF_NOTIFY_SEND_RAW_DATA;
    return TRUE;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    HTTP_FILTER_RAW_DATA *raw = data;
    char *bytes = raw->pvInData;
    static const char field[] = "X-Raw: seen\r\n";
    DWORD i;
    (void)pfc;
    if (type != SF_NOTIFY_SEND_RAW_DATA)
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    if (raw->cbInData > 5 && memcmp(bytes, "HTTP/", 5) == 0) {
        char *eol = memchr(bytes, '\n', raw->cbInData);
        DWORD at = eol ? (DWORD)(eol - bytes) + 1 : raw->cbInData;
        if (raw->cbInData + sizeof field - 1 <= raw->cbInBuffer) {
            memmove(bytes + at + sizeof field - 1, bytes + at, raw->cbInData - at);
            memcpy(bytes + at, field, sizeof field - 1);
            raw->cbInData += sizeof field - 1;
        }
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    }
    for (i = 0; i + 6 <= raw->cbInData; i++)
        if (memcmp(bytes + i, "secret", 6) == 0)
            memcpy(bytes + i, "******", 6);
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
