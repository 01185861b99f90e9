/* A raw-data filter of IIS 5 isolation mode that records both
 * directions: the bytes each connection sends (as they arrive, before
 * any other filter changes them: it runs first, SF_NOTIFY_ORDER_HIGH),
 * the status line of what goes out, and each connection's end. Its
 * record is served from raw data too: a request for /raw-log is answered
 * by the filter itself (WriteClient, then SF_STATUS_REQ_FINISHED). The
 * pieces of one connection are numbered through pFilterContext, memory
 * from AllocMem, as a filter keeps per-connection state. A connection
 * that sends X-Small-Reads is read 100 bytes at a time after that
 * (SF_REQ_SET_NEXT_READ_SIZE), each read noted. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "httpfilt.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char record[65536];
static size_t used;

static void note(const char *text, size_t n)
{
    pthread_mutex_lock(&lock);
    if (used + n < sizeof record) {
        memcpy(record + used, text, n);
        used += n;
    }
    pthread_mutex_unlock(&lock);
}

BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION *pVer)
{
    pVer->dwFilterVersion = HTTP_FILTER_REVISION;
    strcpy(pVer->lpszFilterDesc, "raw recorder");
    pVer->dwFlags = SF_NOTIFY_READ_RAW_DATA | SF_NOTIFY_SEND_RAW_DATA |
                    SF_NOTIFY_END_OF_NET_SESSION | SF_NOTIFY_ORDER_HIGH |
                    SF_NOTIFY_SECURE_PORT | SF_NOTIFY_NONSECURE_PORT;
    return TRUE;
}

static DWORD answer_with_record(HTTP_FILTER_CONTEXT *pfc)
{
    char head[128];
    DWORD n;
    pthread_mutex_lock(&lock);
    snprintf(head, sizeof head,
             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %u\r\n"
             "Connection: close\r\n\r\n",
             (unsigned)used);
    n = (DWORD)strlen(head);
    pfc->WriteClient(pfc, head, &n, 0);
    n = (DWORD)used;
    pfc->WriteClient(pfc, record, &n, 0);
    pthread_mutex_unlock(&lock);
    return SF_STATUS_REQ_FINISHED;
}

DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT *pfc, DWORD type, VOID *data)
{
    HTTP_FILTER_RAW_DATA *raw = data;
    char line[600];
    struct state {
        unsigned pieces;
        int small_reads;
    } *conn = pfc->pFilterContext;
    size_t n, i;

    if (type == SF_NOTIFY_END_OF_NET_SESSION) {
        note("END\n", 4);
        return SF_STATUS_REQ_NEXT_NOTIFICATION;
    }
    if (conn == NULL) {
        char addr[64];
        DWORD size = sizeof addr;
        conn = pfc->AllocMem(pfc, sizeof *conn, 0);
        conn->pieces = 0;
        conn->small_reads = 0;
        pfc->pFilterContext = conn;
        if (pfc->GetServerVariable(pfc, "REMOTE_ADDR", addr, &size)) {
            n = (size_t)snprintf(line, sizeof line, "OPEN from %s secure %d\n", addr,
                                 pfc->fIsSecurePort);
            note(line, n);
        }
    }
    conn->pieces += 1;
    if (type == SF_NOTIFY_READ_RAW_DATA) {
        if (raw->cbInData >= 12 && memcmp(raw->pvInData, "GET /raw-log", 12) == 0)
            return answer_with_record(pfc);
        if (conn->small_reads) {
            /* Reads of at most 100 bytes, as asked. */
            n = (size_t)snprintf(line, sizeof line, "SMALL %u\n", (unsigned)raw->cbInData);
            note(line, n);
            pfc->ServerSupportFunction(pfc, SF_REQ_SET_NEXT_READ_SIZE, NULL, 100, 0);
            return SF_STATUS_REQ_NEXT_NOTIFICATION;
        }
        /* A request for /split that has not come whole: held until the
         * rest arrives (SF_STATUS_REQ_READ_NEXT), then seen in one piece. */
        if (raw->cbInData >= 10 && memcmp(raw->pvInData, "GET /split", 10) == 0 &&
            memmem(raw->pvInData, raw->cbInData, "\r\n\r\n", 4) == NULL) {
            n = (size_t)snprintf(line, sizeof line, "HELD %u\n", (unsigned)raw->cbInData);
            note(line, n);
            return SF_STATUS_REQ_READ_NEXT;
        }
        if (memmem(raw->pvInData, raw->cbInData, "X-Small-Reads:", 14) != NULL) {
            conn->small_reads = 1;
            pfc->ServerSupportFunction(pfc, SF_REQ_SET_NEXT_READ_SIZE, NULL, 100, 0);
        }
        n = (size_t)snprintf(line, sizeof line, "IN#%u ", conn->pieces);
        for (i = 0; i < raw->cbInData && n < sizeof line - 2; i++) {
            char c = ((char *)raw->pvInData)[i];
            line[n++] = (c == '\r' || c == '\n') ? '|' : c;
        }
        line[n++] = '\n';
        note(line, n);
    } else if (type == SF_NOTIFY_SEND_RAW_DATA) {
        const char *out = raw->pvInData;
        if (raw->cbInData >= 5 && memcmp(out, "HTTP/", 5) == 0) {
            n = (size_t)snprintf(line, sizeof line, "OUT#%u ", conn->pieces);
            for (i = 0; i < raw->cbInData && out[i] != '\r' && n < sizeof line - 2; i++)
                line[n++] = out[i];
            line[n++] = '\n';
            note(line, n);
        }
    }
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
