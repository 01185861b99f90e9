/* Files and vectors: HSE_REQ_MAP_URL_TO_PATH(_EX), HSE_REQ_TRANSMIT_FILE
 * (asynchronous, with its own completion function), HSE_REQ_VECTOR_SEND,
 * HSE_REQ_GET_CERT_INFO_EX and an asynchronous WriteClient, chosen by the
 * query. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "httpext.h"

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strcpy(pVer->lpszExtensionDesc, "files");
    return TRUE;
}

static int open_mapped(EXTENSION_CONTROL_BLOCK *ecb, const char *url)
{
    char path[MAX_PATH];
    DWORD size = sizeof path;
    strcpy(path, url);
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH, path, &size, NULL))
        return -1;
    return open(path, O_RDONLY);
}

static VOID WINAPI sent(EXTENSION_CONTROL_BLOCK *ecb, PVOID context, DWORD cbIO, DWORD dwError)
{
    (void)cbIO;
    (void)dwError;
    close((int)(intptr_t)context);
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, NULL, NULL, NULL);
}

static VOID WINAPI written(EXTENSION_CONTROL_BLOCK *ecb, PVOID context, DWORD cbIO,
                           DWORD dwError)
{
    char line[64];
    DWORD n;
    (void)context;
    n = (DWORD)snprintf(line, sizeof line, "async write done: %u bytes, error %u\n",
                        (unsigned)cbIO, (unsigned)dwError);
    ecb->WriteClient(ecb->ConnID, line, &n, HSE_IO_SYNC);
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, NULL, NULL, NULL);
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb)
{
    const char *query = ecb->lpszQueryString;
    if (strcmp(query, "tf") == 0) {
        HSE_TF_INFO tf;
        int fd = open_mapped(ecb, "/files/data.bin");
        if (fd < 0)
            return HSE_STATUS_ERROR;
        memset(&tf, 0, sizeof tf);
        tf.pfnHseIO = sent;
        tf.pContext = (PVOID)(intptr_t)fd;
        tf.hFile = (HANDLE)(intptr_t)fd;
        tf.pszStatusCode = "200 OK";
        tf.pHead = "Content-Type: application/octet-stream\r\nX-Sent-By: TransmitFile\r\n\r\n";
        tf.HeadLength = (DWORD)strlen(tf.pHead);
        tf.pTail = "TAIL";
        tf.TailLength = 4;
        tf.dwFlags = HSE_IO_ASYNC | HSE_IO_SEND_HEADERS;
        if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_TRANSMIT_FILE, &tf, NULL, NULL)) {
            close(fd);
            return HSE_STATUS_ERROR;
        }
        return HSE_STATUS_PENDING;
    }
    if (strcmp(query, "vector") == 0) {
        HSE_VECTOR_ELEMENT parts[3];
        HSE_RESPONSE_VECTOR vector;
        int fd = open_mapped(ecb, "/files/data.bin");
        BOOL ok;
        if (fd < 0)
            return HSE_STATUS_ERROR;
        parts[0].ElementType = HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER;
        parts[0].pvContext = "[";
        parts[0].cbOffset = 0;
        parts[0].cbSize = 1;
        parts[1].ElementType = HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE;
        parts[1].pvContext = (PVOID)(intptr_t)fd;
        parts[1].cbOffset = 10;
        parts[1].cbSize = 10;
        parts[2].ElementType = HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER;
        parts[2].pvContext = "]";
        parts[2].cbOffset = 0;
        parts[2].cbSize = 1;
        vector.dwFlags = HSE_IO_SYNC | HSE_IO_SEND_HEADERS | HSE_IO_FINAL_SEND;
        vector.pszStatus = "200 OK";
        vector.pszHeaders = "Content-Type: text/plain\r\n\r\n";
        vector.nElementCount = 3;
        vector.lpElementArray = parts;
        ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_VECTOR_SEND, &vector, NULL, NULL);
        close(fd);
        return ok ? HSE_STATUS_SUCCESS : HSE_STATUS_ERROR;
    }
    {
        HSE_URL_MAPEX_INFO map;
        CERT_CONTEXT_EX cert;
        BYTE der[4096];
        char line[512];
        DWORD n;
        if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH_EX,
                                        "/files/data.bin", NULL, (LPDWORD)&map))
            return HSE_STATUS_ERROR;
        memset(&cert, 0, sizeof cert);
        cert.CertContext.pbCertEncoded = der;
        cert.cbAllocated = sizeof der;
        ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_GET_CERT_INFO_EX, &cert, NULL, NULL);
        n = (DWORD)snprintf(line, sizeof line,
                            "mapped %s flags 0x%x matching path %u url %u\ncert bytes %u\n",
                            map.lpszPath, (unsigned)map.dwFlags, (unsigned)map.cchMatchingPath,
                            (unsigned)map.cchMatchingURL, (unsigned)cert.CertContext.cbCertEncoded);
        ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IO_COMPLETION, (LPVOID)written, NULL,
                                   NULL);
        if (!ecb->WriteClient(ecb->ConnID, line, &n, HSE_IO_ASYNC))
            return HSE_STATUS_ERROR;
        return HSE_STATUS_PENDING;
    }
}
