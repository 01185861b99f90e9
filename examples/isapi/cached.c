/* cached.c: an extension whose answer does not change from one request to
 * the next, and says so: it sends it with HSE_REQ_VECTOR_SEND and
 * HSE_IO_CACHE_RESPONSE, so the server keeps it (HTTP.SYS's kernel cache
 * on IIS 6, the listener's cache here) and answers repeats of the URL
 * without calling the extension. Build and map it as hello.c:
 *
 *   cc -shared -fPIC -I include -o /opt/isapi/cached.so examples/isapi/cached.c
 *   inetsrv mb set W3SVC/1/ROOT/ScriptMaps ".cached,/opt/isapi/cached.so,1"
 *   inetsrv webext add-file /opt/isapi/cached.so --enable
 */
#include <string.h>

#include "httpext.h"

static const char greeting[] = "Hello from ISAPI, kept by the server's cache\n";

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strncpy(pVer->lpszExtensionDesc, "Hello, cached", HSE_MAX_EXT_DLL_NAME_LEN - 1);
    pVer->lpszExtensionDesc[HSE_MAX_EXT_DLL_NAME_LEN - 1] = '\0';
    return TRUE;
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *pECB)
{
    HSE_VECTOR_ELEMENT element;
    HSE_RESPONSE_VECTOR vector;

    element.ElementType = HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER;
    element.pvContext = (PVOID)greeting;
    element.cbOffset = 0;
    element.cbSize = sizeof greeting - 1;
    vector.dwFlags = HSE_IO_SYNC | HSE_IO_SEND_HEADERS | HSE_IO_FINAL_SEND | HSE_IO_CACHE_RESPONSE;
    vector.pszStatus = "200 OK";
    vector.pszHeaders = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
    vector.nElementCount = 1;
    vector.lpElementArray = &element;
    if (!pECB->ServerSupportFunction(pECB->ConnID, HSE_REQ_VECTOR_SEND, &vector, NULL, NULL))
        return HSE_STATUS_ERROR;
    return HSE_STATUS_SUCCESS_AND_KEEP_CONN;
}

BOOL WINAPI TerminateExtension(DWORD dwFlags)
{
    (void)dwFlags;
    return TRUE;
}
