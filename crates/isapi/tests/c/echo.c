/* A test extension written as any ISAPI author writes one: it reports
 * server variables, reads the whole body, answers with a summary, and
 * checks the errors IIS gives for misuse. With the query "pending" it
 * finishes the request from a thread of its own (HSE_STATUS_PENDING and
 * HSE_REQ_DONE_WITH_SESSION), and TerminateExtension waits for that
 * thread, as IIS requires of a module before it is unloaded. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpext.h"

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strncpy(pVer->lpszExtensionDesc, "echo test extension", HSE_MAX_EXT_DLL_NAME_LEN);
    return TRUE;
}

static void say(EXTENSION_CONTROL_BLOCK *ecb, const char *text)
{
    DWORD n = (DWORD)strlen(text);
    ecb->WriteClient(ecb->ConnID, (LPVOID)text, &n, HSE_IO_SYNC);
}

/* The finishing thread, joined at unload. */
static pthread_t finisher;
static int finisher_started;

static void *finish_later(void *arg)
{
    EXTENSION_CONTROL_BLOCK *ecb = arg;
    DWORD status = HSE_STATUS_SUCCESS_AND_KEEP_CONN;
    say(ecb, "finished from another thread\n");
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
    return NULL;
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb)
{
    char line[512];
    char value[256];
    DWORD size;
    HSE_SEND_HEADER_EX_INFO head;

    head.pszStatus = "200 OK";
    head.cchStatus = (DWORD)strlen(head.pszStatus);
    head.pszHeader = "Content-Type: text/plain\r\nX-Echo: yes\r\n\r\n";
    head.cchHeader = (DWORD)strlen(head.pszHeader);
    head.fKeepConn = TRUE;
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &head, NULL,
                                    NULL))
        return HSE_STATUS_ERROR;

    snprintf(line, sizeof line, "method %s query %s path %s\n", ecb->lpszMethod,
             ecb->lpszQueryString, ecb->lpszPathInfo);
    say(ecb, line);

    size = sizeof value;
    if (ecb->GetServerVariable(ecb->ConnID, "SERVER_NAME", value, &size)) {
        snprintf(line, sizeof line, "SERVER_NAME %s (%u)\n", value, (unsigned)size);
        say(ecb, line);
    }
    size = 2;
    if (!ecb->GetServerVariable(ecb->ConnID, "SERVER_NAME", value, &size) &&
        GetLastError() == ERROR_INSUFFICIENT_BUFFER) {
        snprintf(line, sizeof line, "small buffer: needs %u\n", (unsigned)size);
        say(ecb, line);
    }
    size = sizeof value;
    if (!ecb->GetServerVariable(ecb->ConnID, "NO_SUCH_VARIABLE", value, &size) &&
        GetLastError() == ERROR_INVALID_INDEX)
        say(ecb, "unknown variable: ERROR_INVALID_INDEX\n");
    if (!ecb->ServerSupportFunction(ecb->ConnID, 999999, NULL, NULL, NULL) &&
        GetLastError() == ERROR_INVALID_PARAMETER)
        say(ecb, "unknown request: ERROR_INVALID_PARAMETER\n");
    {
        HANDLE token = NULL;
        if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_GET_IMPERSONATION_TOKEN, &token,
                                        NULL, NULL) &&
            GetLastError() == ERROR_NOT_SUPPORTED)
            say(ecb, "impersonation token: ERROR_NOT_SUPPORTED\n");
    }
    if (!ecb->ServerSupportFunction((HCONN)(intptr_t)12345, HSE_REQ_IS_KEEP_CONN, &size, NULL,
                                    NULL) &&
        GetLastError() == ERROR_INVALID_PARAMETER)
        say(ecb, "bad ConnID: ERROR_INVALID_PARAMETER\n");

    {
        unsigned long total = ecb->cbAvailable;
        unsigned long sum = 0;
        DWORD i;
        char buf[4096];
        for (i = 0; i < ecb->cbAvailable; i++)
            sum += ecb->lpbData[i];
        while (total < ecb->cbTotalBytes) {
            DWORD n = sizeof buf;
            if (!ecb->ReadClient(ecb->ConnID, buf, &n) || n == 0)
                break;
            for (i = 0; i < n; i++)
                sum += (unsigned char)buf[i];
            total += n;
        }
        snprintf(line, sizeof line, "body %lu bytes (%u preloaded), sum %lu\n", total,
                 (unsigned)ecb->cbAvailable, sum);
        say(ecb, line);
    }

    ecb->dwHttpStatusCode = 200;
    strncpy(ecb->lpszLogData, "echoed", HSE_LOG_BUFFER_LEN);
    if (strcmp(ecb->lpszQueryString, "pending") == 0) {
        if (finisher_started)
            pthread_join(finisher, NULL);
        pthread_create(&finisher, NULL, finish_later, ecb);
        finisher_started = 1;
        return HSE_STATUS_PENDING;
    }
    return HSE_STATUS_SUCCESS;
}

BOOL WINAPI TerminateExtension(DWORD dwFlags)
{
    if (finisher_started) {
        pthread_join(finisher, NULL);
        finisher_started = 0;
    }
    const char *marker = getenv("ECHO_TERMINATED_MARKER");
    if (marker != NULL) {
        FILE *f = fopen(marker, "w");
        if (f != NULL) {
            fprintf(f, "terminated %u\n", (unsigned)dwFlags);
            fclose(f);
        }
    }
    return TRUE;
}
