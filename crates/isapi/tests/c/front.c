/* A wildcard application map front end, as IIS 6 sites used them for URL
 * rewriting and their own access checks: it sees every request, answers
 * some itself, and hands the rest on with HSE_REQ_EXEC_URL (skipping
 * itself), then notes how the child request ended in the file the
 * request's X-Status-File header names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpext.h"

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strcpy(pVer->lpszExtensionDesc, "front end");
    return TRUE;
}

/* Called when the child request has answered; the context is the status
 * file's name (or NULL). */
static VOID WINAPI child_done(EXTENSION_CONTROL_BLOCK *ecb, PVOID context, DWORD cbIO,
                              DWORD dwError)
{
    HSE_EXEC_URL_STATUS status;
    char *file = context;
    (void)cbIO;
    (void)dwError;
    if (file != NULL &&
        ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_GET_EXEC_URL_STATUS, &status, NULL,
                                   NULL)) {
        FILE *f = fopen(file, "a");
        if (f != NULL) {
            fprintf(f, "%s %u.%u\n", ecb->lpszPathInfo, (unsigned)status.uHttpStatusCode,
                    (unsigned)status.uHttpSubStatus);
            fclose(f);
        }
    }
    free(file);
    /* The child has answered; the log line still takes the front end's
     * note. */
    ecb->ServerSupportFunction(ecb->ConnID, HSE_APPEND_LOG_PARAMETER, "front=done", NULL, NULL);
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, NULL, NULL, NULL);
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb)
{
    static char rewritten[512];
    char secret[64];
    DWORD size = sizeof secret;
    HSE_EXEC_URL_INFO child;
    const char *url = ecb->lpszPathInfo;

    if (strncmp(url, "/private/", 9) == 0 &&
        (!ecb->GetServerVariable(ecb->ConnID, "HTTP_X_SECRET", secret, &size) ||
         strcmp(secret, "letmein") != 0)) {
        const char *body = "denied by the front end\n";
        DWORD n = (DWORD)strlen(body);
        ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, "403 Forbidden",
                                   NULL, (LPDWORD) "Content-Type: text/plain\r\n\r\n");
        ecb->WriteClient(ecb->ConnID, (LPVOID)body, &n, HSE_IO_SYNC);
        return HSE_STATUS_SUCCESS;
    }

    memset(&child, 0, sizeof child);
    child.dwExecUrlFlags = HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR;
    if (strncmp(url, "/entity/", 8) == 0) {
        /* A child request with a body of the front end's own. */
        static HSE_EXEC_URL_ENTITY_INFO entity;
        entity.cbAvailable = 12;
        entity.lpbData = "hello entity";
        child.pszUrl = "/x.echo";
        child.pszMethod = "POST";
        child.pEntity = &entity;
    }
    if (strncmp(url, "/old/", 5) == 0) {
        /* Not thread-safe, and enough for a test run one request at a time. */
        snprintf(rewritten, sizeof rewritten, "/new/%s", url + 5);
        child.pszUrl = rewritten;
    }
    child.pszChildHeaders = "X-Front: yes\r\n";
    {
        char file[256];
        DWORD n = sizeof file;
        char *context = NULL;
        if (ecb->GetServerVariable(ecb->ConnID, "HTTP_X_STATUS_FILE", file, &n))
            context = strdup(file);
        if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IO_COMPLETION, (LPVOID)child_done,
                                        NULL, (LPDWORD)context))
            return HSE_STATUS_ERROR;
    }
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_EXEC_URL, &child, NULL, NULL))
        return HSE_STATUS_ERROR;
    return HSE_STATUS_PENDING;
}
